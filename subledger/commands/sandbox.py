"""``subledger sandbox list`` and ``subledger sandbox serve NAME``: local vendor sandboxes.

A sandbox is a stateful local HTTP server that speaks a vendor's API (see
``docs/sandboxes.md``). Plugins register them through the ``register_sandboxes`` hook.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from rich.table import Table

from subledger.commands._output import console, err_console, print_json
from subledger.core.errors import ConfigError

sandbox_app = typer.Typer(
    help="Local vendor sandboxes (stateful fake APIs) to try connectors without an account.",
    no_args_is_help=True,
)

DEFAULT_PORT = 12111


def _classes() -> dict[str, type[Any]]:
    from subledger.core.plugins import sandbox_classes

    return sandbox_classes()


def _sandbox_class(name: str) -> type[Any]:
    classes = _classes()
    if name not in classes:
        known = ", ".join(sorted(classes)) or "none are installed"
        raise ConfigError(f"no sandbox named {name!r}", fix=f"use one of: {known} (see `subledger sandbox list`)")
    return classes[name]


@sandbox_app.command("list")
def list_sandboxes(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the sandboxes plugins provide."""
    rows = [{"name": name, "title": getattr(cls, "title", "") or "", "class": f"{cls.__module__}.{cls.__qualname__}"}
            for name, cls in sorted(_classes().items())]
    if json_out:
        print_json(rows)
        return
    table = Table("sandbox", "what it emulates", "class")
    for row in rows:
        table.add_row(row["name"], row["title"], row["class"])
    console.print(table)


@sandbox_app.command("serve")
def serve(
    name: str = typer.Argument(..., help="The sandbox to run, e.g. stripe."),
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", min=0, max=65535, help="Port (0 picks a free one)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; keep the loopback default."),
    seed: Path | None = typer.Option(None, "--seed", help="Fixture file (JSON or YAML) to load at start."),
    json_out: bool = typer.Option(False, "--json", help="Print the address as one JSON line."),
) -> None:
    """Serve a sandbox until interrupted (Ctrl-C). State lives in memory."""
    from subledger.core.sandbox import SandboxServer

    cls = _sandbox_class(name)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"warning: {host} is not the loopback interface; the sandbox and its unauthenticated "
                          "/_sandbox control endpoints will be reachable from other machines")
    sandbox = cls(fixture=seed) if seed is not None else cls()
    try:
        server = SandboxServer(sandbox, host=host, port=port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                          fix="choose another --port (0 picks a free one), or stop what uses this one") from None
    hint = sandbox.connection_hint(server.url)
    if json_out:
        sys.stdout.write(json.dumps({"sandbox": name, "url": server.url, "connection": hint}) + "\n")
        sys.stdout.flush()
    else:
        console.print(f"[bold]{name}[/bold] sandbox listening on [cyan]{server.url}[/cyan]")
        if hint:
            console.print(f"connection config: {json.dumps(hint)}")
        console.print(f"control: {server.url}/_sandbox/health (faults, clock, seed: see docs/sandboxes.md)")
        err_console.print("press Ctrl-C to stop")

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def register(app: typer.Typer) -> None:
    app.add_typer(sandbox_app, name="sandbox")
