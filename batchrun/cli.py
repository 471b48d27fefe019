"""Command line: argparse, one error handler, documented exit codes.

Exit codes: 0 success; 1 some requests (or expectations, gates) failed; 2 invalid spec or usage;
3 internal error (a bug); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM: a cancelled CI job, a
deleted pod), both graceful and resumable (batchrun.signals). Each subcommand lives in
batchrun/commands/<name>.py with `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import traceback
from collections.abc import Iterator, Sequence

from batchrun import signals
from batchrun.errors import BatchrunError, SpecError

COMMANDS = {
    "validate": "check spec files and report every problem with its location",
    "plan": "expand a spec into planned requests without touching the network",
    "run": "send every planned request and write one JSON line per request",
    "serve": "start the embedded fal-compatible server",
    "cancel": "cancel the queue requests journaled as in flight for an output",
    "report": "summarise an output file",
    "diff": "compare a new output with a baseline",
    "view": "serve a local page that follows an output while a run writes it",
    "merge": "merge shard outputs in plan order",
    "check": "re-evaluate a spec's expectations on an existing output, sending nothing",
    "endpoints": "pin endpoints' OpenAPI schemas and prices (pull) and report drift (check)",
    "export": "write an output's records (newest per id) as Parquet, CSV or JSONL",
    "cache": "show, prune or clear the result cache",
}


def build_parser() -> argparse.ArgumentParser:
    from batchrun import __version__

    parser = argparse.ArgumentParser(
        prog="batchrun",
        description="Run batches of model-inference requests against fal-style APIs from a YAML spec.",
    )
    parser.add_argument("--version", action="version", version=f"batchrun {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for every error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"batchrun.commands.{name}")
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def _is_cancelled(exc: BaseException) -> bool:
    """asyncio.CancelledError, without importing asyncio for commands that never use it."""
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


@contextlib.contextmanager
def error_handler(debug: bool) -> Iterator[list[int]]:
    """Turn every failure into a message and an exit code; tracebacks only for real bugs."""
    code = [0]
    try:
        yield code
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        code[0] = exc.exit_code
    except BatchrunError as exc:
        if debug:
            traceback.print_exc()
        print(f"batchrun: error: {exc}", file=sys.stderr)
        code[0] = exc.exit_code
    except KeyboardInterrupt:
        signals.settle()  # a second Ctrl-C must not cut this short (exit -2, not 130)
        print(f"batchrun: interrupted{signals.label()}", file=sys.stderr)
        code[0] = signals.exit_code()
    except BrokenPipeError:
        # `batchrun plan | head`: the reader left; that is not an error.
        with contextlib.suppress(Exception):
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115 - silence the flush at exit
        code[0] = 0
    except Exception:
        from batchrun import __version__

        traceback.print_exc()
        print(
            f"batchrun: internal error: this is a bug in batchrun {__version__}; please report it "
            "with the traceback above",
            file=sys.stderr,
        )
        code[0] = 3
    except BaseException as exc:
        if not _is_cancelled(exc):
            raise
        # Only a Ctrl-C (or a SIGTERM, which takes its path) cancels a command's main task.
        # asyncio's runner turns that into KeyboardInterrupt, except when it lands while the
        # runner is still starting (a race there).
        signals.settle()
        print(f"batchrun: interrupted{signals.label()}", file=sys.stderr)
        code[0] = signals.exit_code()


# What a command imports lazily once it runs, loaded while Ctrl-C is held back (signals.held): a
# KeyboardInterrupt inside an import can be swallowed ("Exception ignored in ... _get_module_lock")
# so the run goes on, or leave the process to exit -2 after it reported exit 130.
_PRELOAD = {name: ("anyio._backends._asyncio", "anyio._core._signals")
            for name in ("run", "cancel", "serve", "endpoints")}


def main(argv: Sequence[str] | None = None) -> int:
    # SIGTERM stops a command the way Ctrl-C does. `argv` None: main is the program (the console
    # script, `python -m batchrun`), which ends when it returns; once interrupted it keeps repeated
    # signals harmless up to its exit. A caller running commands in its own process gets its handlers back.
    with signals.handled(program=argv is None):
        try:  # Ctrl-C or SIGTERM during start-up: 130/143 and one line, not a traceback
            with signals.held():
                parser = build_parser()
                args = parser.parse_args(argv)
                for module in _PRELOAD.get(args.command, ()):
                    importlib.import_module(module)
        except KeyboardInterrupt:
            signals.settle()
            print(f"batchrun: interrupted{signals.label()}", file=sys.stderr)
            return signals.exit_code()
        with error_handler(args.debug) as code:
            code[0] = args._run(args)
        return code[0]
