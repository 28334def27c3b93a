"""Where the vendors' published API specifications live (never copied into the repo).

``$SUBLEDGER_VENDOR_SPECS`` names the directory; by default it is
``../shared/vendor-specs`` next to the repository checkout. Each vendor has a
sub-directory (``stripe/spec3.2023-08-16.json``). Tests that need a spec ask
:func:`spec_file`, which says why a spec is unavailable so the test can skip with that
reason printed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV = "SUBLEDGER_VENDOR_SPECS"


def repo_root() -> Path:
    """The checkout this package runs from (``subledger/core/sandbox/specs.py`` -> root)."""
    return Path(__file__).resolve().parents[3]


def vendor_specs_dir() -> Path:
    """``$SUBLEDGER_VENDOR_SPECS``, else ``<repo>/../shared/vendor-specs``."""
    configured = os.environ.get(ENV)
    if configured:
        return Path(configured).expanduser()
    return (repo_root().parent / "shared" / "vendor-specs").resolve()


@dataclass(frozen=True)
class SpecLookup:
    """The outcome of looking for one spec file."""

    path: Path | None
    reason: str = ""

    @property
    def found(self) -> bool:
        return self.path is not None


def spec_file(vendor: str, filename: str) -> SpecLookup:
    """Find ``<specs dir>/<vendor>/<filename>``; when absent, say where we looked and why."""
    base = vendor_specs_dir()
    path = base / vendor / filename
    if path.is_file():
        return SpecLookup(path)
    how = f"${ENV}" if os.environ.get(ENV) else f"the default location (set ${ENV} to override)"
    return SpecLookup(None, f"vendor spec {vendor}/{filename} not found under {base} ({how})")


def serve_mock_script() -> SpecLookup:
    """The ``serve-mock.sh`` launcher that ships with the vendor specs."""
    path = vendor_specs_dir() / "serve-mock.sh"
    if path.is_file():
        return SpecLookup(path)
    return SpecLookup(None, f"serve-mock.sh not found in {vendor_specs_dir()} (set ${ENV})")
