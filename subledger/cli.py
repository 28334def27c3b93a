"""The ``subledger`` command line (typer + rich).

Every command is a thin layer over ``subledger.sync`` and ``subledger.core``. A user
error (:class:`~subledger.core.errors.ConfigError`) prints one line that names the fix
and exits 2; other failures exit 1; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

import typer

from subledger.commands._output import console, err_console, print_json
from subledger.core.errors import ConfigError, FailureKind, SubledgerError, classify

app = typer.Typer(
    name="subledger",
    help="Revenue subledger and connector hub for usage-based B2B billing.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# Command modules, each with ``register(app)``. Order is the order of ``--help``.
COMMAND_MODULES = (
    "subledger.commands.setup",
    "subledger.commands.plugins",
    "subledger.commands.connections",
    "subledger.commands.pull",
    "subledger.commands.status",
    "subledger.commands.sync",
    "subledger.commands.leakage",
    "subledger.commands.rate",
    "subledger.commands.schedule",
    "subledger.commands.revrec",
    "subledger.commands.journal",
    "subledger.commands.sandbox",
    "subledger.commands.serve",
    "subledger.commands.demo",
)

_state: dict[str, Any] = {"debug": False}


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            console.print(f"subledger {version('subledger')}")
        except PackageNotFoundError:  # pragma: no cover - only in an uninstalled checkout
            console.print("subledger (not installed)")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs (also after the command)."),
    _show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit."),
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        from subledger.core.secrets import install_log_redaction
    except ImportError:  # pragma: no cover - only while bootstrapping a checkout
        return
    install_log_redaction()


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(app)


_register_commands()


GLOBAL_FLAGS = ("--debug",)


def hoist_global_flags(args: list[str]) -> list[str]:
    """Move global flags written after the command to the front (``status --debug``),
    leaving anything after ``--`` alone."""
    end = args.index("--") if "--" in args else len(args)
    found = [a for a in args[:end] if a in GLOBAL_FLAGS]
    rest = [a for a in args[:end] if a not in GLOBAL_FLAGS]
    return [*dict.fromkeys(found), *rest, *args[end:]]


def main() -> None:
    """Console-script entry point."""
    import sys

    sys.argv[1:] = hoist_global_flags(sys.argv[1:])
    try:
        # Without click's standalone mode a command's ``typer.Exit(code)`` comes back as the
        # return value: hand it to the shell, or cron never sees a failure.
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            raise SystemExit(code)
    except SubledgerError as exc:
        _fail(exc)
    except typer.Abort:
        err_console.print("aborted")
        raise SystemExit(1) from None
    except SystemExit:
        raise
    except Exception as exc:  # the one place a traceback may be hidden: behind --debug
        if hasattr(exc, "exit_code"):  # click's UsageError and friends
            exc.show()  # type: ignore[attr-defined]
            raise SystemExit(exc.exit_code) from None  # type: ignore[attr-defined]
        _fail(exc)


def _fail(exc: BaseException) -> None:
    from subledger.core.secrets import redact

    kind = classify(exc)
    if _state["debug"]:
        import traceback

        err_console.print(redact("".join(traceback.format_exception(exc))), markup=False, highlight=False)
    message = redact(str(exc))
    if not isinstance(exc, SubledgerError):
        message = f"{type(exc).__name__}: {message}"
    label = {FailureKind.CONFIG: "error", FailureKind.TRANSIENT: "temporary failure"}.get(
        kind, "internal error"
    )
    hint = "" if _state["debug"] or kind is FailureKind.CONFIG else " (run with --debug for details)"
    # One line however long, so a cron log or a grep sees the whole message.
    err_console.print(f"[bold red]{label}:[/] {message}{hint}", markup=True, highlight=False, soft_wrap=True)
    raise SystemExit(2 if kind is FailureKind.CONFIG else 1)


__all__ = ["ConfigError", "app", "console", "main", "print_json"]
