"""``subledger serve`` (the HTTP service) and ``subledger apikey create|revoke|list``."""

from __future__ import annotations

import typer
from rich.table import Table

from subledger.commands._output import console, print_json
from subledger.commands._store import open_store

apikey_app = typer.Typer(help="API keys for `subledger serve` (scopes: ingest, read, write, admin).",
                         no_args_is_help=True)


def _actor() -> str:
    from subledger.commands.sync import actor

    return actor()


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    workers: int = typer.Option(1, "--workers", help="Worker processes."),
) -> None:
    """Serve the HTTP API: usage ingest, standing, findings, actions, sync control, webhooks."""
    import uvicorn

    from subledger.api import create_app

    engine = open_store()
    console.print(f"subledger serving on http://{host}:{port} (OpenAPI at /docs)")
    uvicorn.run(create_app(engine), host=host, port=port, workers=workers, log_level="info", access_log=False)


@apikey_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="What the key is for (shown in lists)."),
    scope: list[str] = typer.Option(..., "--scope", help="ingest, read, write or admin; repeat for several."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create a key. The token is printed once and never stored: keep it."""
    from subledger.api.keys import create_key

    created = create_key(open_store(), name=name, scopes=scope, actor=_actor())
    if json_out:
        print_json({"id": created.key.id, "scopes": created.key.scopes, "token": created.token})
        return
    console.print(f"created {created.key.id} ({', '.join(created.key.scopes)})")
    console.print(created.token, markup=False, highlight=False)
    console.print("[dim]this token is shown once; subledger keeps only its hash[/]")


@apikey_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key id (key_...)."),
           reason: str = typer.Option("", "--reason")) -> None:
    """Revoke a key (refused within 5 seconds by running servers)."""
    from subledger.api.keys import revoke_key

    row = revoke_key(open_store(), key_id, actor=_actor(), reason=reason)
    console.print(f"revoked {row.id}")


@apikey_app.command("list")
def list_keys_command(json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List keys (ids, names, scopes; never tokens)."""
    from subledger.api.keys import list_keys

    rows = list_keys(open_store())
    data = [{"id": k.id, "name": k.name, "scopes": k.scopes, "created_at": k.created_at.isoformat(),
             "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in rows]
    if json_out:
        print_json(data)
        return
    table = Table("id", "name", "scopes", "created", "revoked")
    for d in data:
        table.add_row(d["id"], d["name"], ",".join(d["scopes"]), d["created_at"][:19], (d["revoked_at"] or "")[:19])
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(apikey_app, name="apikey")
