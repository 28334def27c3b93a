"""The HTTP service (``subledger serve``). See ``docs/service.md``."""

from subledger.api.app import create_app

__all__ = ["create_app"]
