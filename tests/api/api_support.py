"""Helpers shared by the API tests."""

from __future__ import annotations


def auth(token: str) -> dict[str, str]:
    """The Authorization header for ``token``."""
    return {"Authorization": f"Bearer {token}"}
