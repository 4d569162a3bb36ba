"""The `taoflow` command line: engine commands live here; the Prefect-backed commands (`run`, `demo`,
`tune`) are added by `flows.cli`, which is the console-script entry point, so the engine never imports
Prefect. A UserError prints its message on stderr and exits 2, never a traceback."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer.exceptions import TyperException

from taoflow.errors import UserError

app = typer.Typer(
    name="taoflow",
    help="Build, validate, run and hand off NVIDIA TAO actions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
stderr = Console(stderr=True, soft_wrap=True)


@app.callback()
def _root() -> None:
    """Build, validate, run and hand off NVIDIA TAO actions."""
    # A callback keeps `taoflow` a command group even when only one command is registered.


def _register() -> None:
    # Each module adds its commands to `app` (one module per command group); add yours here.
    import taoflow.commands  # noqa: F401


def run_cli(argv: list[str] | None = None) -> int:
    """Run the app; returns the exit code (0 fine, 2 user or usage error, 1 a run that failed, 3 a run whose
    model was not promoted)."""
    try:
        # Without standalone mode click *returns* the code of a `typer.Exit(code)` (e.g. 3: not promoted).
        result = app(args=argv, standalone_mode=False)
    except UserError as exc:
        print_error(exc)
        return int(getattr(exc, "exit_code", 2))
    except typer.Exit as exc:
        return exc.exit_code
    except (typer.Abort, KeyboardInterrupt):
        stderr.print("aborted", highlight=False)
        return 130
    except TyperException as exc:  # typer's own click (typer ≥ 0.29 vendors it): unknown option, command, ...
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            stderr.print(f"Error: {escape(str(exc))}", highlight=False)
        return int(getattr(exc, "exit_code", 2) or 2)
    except SystemExit as exc:
        return int(exc.code or 0)
    return result if type(result) is int else 0


def print_error(exc: UserError) -> None:
    """`error: MESSAGE`, one `  - problem` line each, then `hint: ...` when the error has one."""
    stderr.print(f"[red]error:[/red] {escape(str(exc))}", markup=True, highlight=False)
    hint = getattr(exc, "hint", None)
    if hint:
        stderr.print(f"[dim]hint:[/dim] {escape(hint)}", markup=True, highlight=False)


def main() -> None:
    _register()
    sys.exit(run_cli())
