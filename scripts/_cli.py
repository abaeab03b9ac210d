"""What every script shares: the --env and --debug flags, profile selection and error rendering."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

if __package__ in (None, ""):  # pragma: no cover - run as a file, not as a module
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.errors import PiperError, UsageError  # noqa: E402,F401
from services.profiles import Profile, load_profile, profile_names  # noqa: E402
from services.project import Project, current_project, select_environment  # noqa: E402


class _Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(allow_abbrev=False, **kwargs)  # type: ignore[arg-type]

    def error(self, message: str) -> None:  # type: ignore[override]
        # One line and exit 2, as everywhere in piper-ops.
        self.exit(2, f"error: {message}; see --help\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def,override]
        # Name a mistyped flag before argparse complains about the required one it hides.
        known = {option for action in self._actions for option in action.option_strings}
        for token in sys.argv[1:] if args is None else args:
            flag = str(token).split("=", 1)[0]
            if flag.startswith("--") and flag != "--" and flag not in known:
                self.error(f"unknown option {flag}")
        return super().parse_args(args, namespace)


def parser(description: str) -> argparse.ArgumentParser:
    """Return an argument parser with the flags every script takes."""
    cli = _Parser(description=description)
    cli.add_argument("--env", help="environment to act on (default: $PIPER_ENV, then PIPER_ENV in .env)")
    cli.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    return cli


def selected_profile(env: str | None) -> tuple[Profile, Project]:
    """Return the profile of the selected environment and its project."""
    project = current_project()
    name = select_environment(env, project, profile_names(project))
    return load_profile(name, project), project


def configure_logging(debug: bool) -> None:
    """Log to stderr as `warning: ...` lines, like every other message of piper-ops."""
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s: %(message)s")


def run(cli: argparse.ArgumentParser, argv: Sequence[str] | None, body: Callable[[argparse.Namespace], int]) -> int:
    """Parse argv, run body, and turn domain errors into one stderr line and an exit code."""
    args = cli.parse_args(argv)
    configure_logging(args.debug)
    try:
        return body(args)
    except PiperError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; nothing was changed by the step that was running", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Whoever read standard output stopped reading (`| head`): what they got is incomplete.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush into the closed pipe
        print("error: standard output was closed before everything was written; "
              "redirect it to a file (> FILE) or pass --output FILE", file=sys.stderr)
        return 1


def confirm(question: str, *, yes: bool) -> None:
    """Ask a yes/no question on the terminal (stderr); without a terminal, require --yes.

    Raises ConfirmationRequired when the answer is not yes: nothing is changed then.
    """
    from services.errors import ConfirmationRequired

    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationRequired(f"{question.rstrip('?')}: no terminal to confirm on; pass --yes to proceed")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise ConfirmationRequired("not confirmed; nothing was changed")


def run_command(main: Callable[[], int]) -> NoReturn:
    """Run a script's main as a command, then exit at once with its code.

    Each script turns the cycle collector off before its imports: start-up only makes objects
    that live until the end. Here start-up is over, so they are frozen out of every later
    collection and the collector is turned back on (about 20 ms a command; docs/BENCHMARKS.md).
    SIGTERM unwinds like Ctrl-C, so open transactions roll back and temporary files go.
    """
    gc.freeze()
    gc.enable()
    signal.signal(signal.SIGTERM, _terminated)
    exit_now(main())


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def exit_now(code: int) -> NoReturn:
    """End the script with code as soon as what it wrote is flushed.

    Every file a script writes is complete and closed when its main returns; tearing the
    interpreter down, object by object, would only add ~20 ms to every command (see
    docs/BENCHMARKS.md). A standard stream that cannot be flushed (a closed pipe, a full disk)
    makes the exit code non-zero: the output is incomplete. Under a profiler or a tracer
    (coverage), which write their results at exit, the exit is the usual one.
    """
    monitoring = getattr(sys, "monitoring", None)  # Python 3.12+: coverage may watch through it
    if (sys.getprofile() is not None or sys.gettrace() is not None
            or (monitoring is not None and monitoring.get_tool(monitoring.COVERAGE_ID) is not None)):
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError as exc:
            code = code or 1
            try:
                sys.stderr.write(f"error: the output could not be written completely ({exc.strerror or exc})\n")
                sys.stderr.flush()
            except OSError:
                pass
    os._exit(code)
