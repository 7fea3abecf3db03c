"""The ``raysweep`` command.

Exit codes: 0 ok; 1 runtime failure; 2 bad usage or configuration (one line, no traceback);
3 benchmark regression; 130 interrupted. Tables and results go to stdout, progress to stderr.
Set ``RAYSWEEP_DEBUG=1`` to see the traceback of an internal error.
"""

from __future__ import annotations

import os
import re
import sys

import typer

try:  # typer >= 0.20 vendors its own click; older versions raise the click package's errors
    from typer._click.exceptions import ClickException as _ClickError  # type: ignore[import-not-found]
    from typer._click.exceptions import UsageError as _UsageError  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    from click import ClickException as _ClickError  # type: ignore[assignment]
    from click import UsageError as _UsageError  # type: ignore[assignment]

from raysweep._secrets import redact_uri
from raysweep.errors import UserError

app = typer.Typer(
    name="raysweep",
    help="Tune and benchmark machine-unlearning methods on Ray Tune + Optuna + MLflow.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE, EXIT_REGRESSION, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def _version(value: bool) -> None:
    if value:
        from raysweep import __version__

        print(f"raysweep {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    """Tune and benchmark machine-unlearning methods on Ray Tune + Optuna + MLflow."""


def _register() -> None:
    # Each module adds its commands to ``app``; keep one module per command group.
    from raysweep.cli import (  # noqa: F401
        _bench,
        _catalog,
        _doctor,
        _explore,
        _jobs,
        _methods,
        _metrics,
        _sweep,
        _workload,
    )


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    _register()
    command = typer.main.get_command(app)
    try:
        # With standalone_mode=False click returns the code of a ``typer.Exit(n)`` instead of
        # raising it; keep it (bench run exits 3 on a regression this way).
        rc = command.main(args=argv, prog_name="raysweep", standalone_mode=False)
        return rc if type(rc) is int else EXIT_OK
    except UserError as exc:
        # Always one line: multi-line messages (e.g. an expected directory layout) are joined.
        msg = re.sub(r"\s*\n\s*", " ", str(exc).strip())
        print(f"raysweep: error: {redact_uri(msg)}", file=sys.stderr)  # no passwords in errors
        return EXIT_USAGE
    except typer.Exit as exc:
        return int(exc.exit_code)
    except _UsageError as exc:  # one line, like a UserError: what is wrong and where to look
        path = exc.ctx.command_path if exc.ctx is not None else "raysweep"
        msg = " ".join(exc.format_message().split())
        if not msg:  # no arguments: the help was printed
            return EXIT_USAGE
        print(f"raysweep: error: {path}: {msg} (see: {path} -h)", file=sys.stderr)
        return EXIT_USAGE
    except _ClickError as exc:  # bad parameter values, missing files given as arguments
        print(f"raysweep: error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyboardInterrupt, typer.Abort):
        print("raysweep: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug or an environment failure, not a user mistake
        if os.environ.get("RAYSWEEP_DEBUG"):
            raise
        print(f"raysweep: failed: {type(exc).__name__}: {redact_uri(str(exc))} "
              f"(RAYSWEEP_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return EXIT_RUNTIME


def run() -> None:
    sys.exit(main())


__all__ = ["app", "main", "run"]
