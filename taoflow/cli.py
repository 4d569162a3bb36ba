"""The `taoflow` command line: engine commands live here; the Prefect-backed commands (`run`, `demo`,
`tune`) are added by `flows.cli`, which is the console-script entry point, so the engine never imports
Prefect. A UserError prints its message on stderr and exits 2, never a traceback."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

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
    """Run the app; returns the exit code (0 fine, 2 user error)."""
    try:
        app(args=argv, standalone_mode=False)
    except UserError as exc:
        stderr.print(f"[red]error:[/red] {escape(str(exc))}", markup=True, highlight=False)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # click's own usage errors
        return int(exc.code or 0)
    except Exception as exc:  # click.UsageError and friends
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return 2
        if isinstance(exc, click.exceptions.Abort):
            return 130
        raise
    return 0


def main() -> None:
    _register()
    sys.exit(run_cli())
