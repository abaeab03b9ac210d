"""The one command layer: each command is declared once, and opened by two doors.

A `Command` declares a command's name, one-line summary, flags (with their help) and the
function that does it; scripts/_commands.py declares every command. `Command.main(argv)` is the
script door (`python scripts/x.py ...`, and setup's steps); `invoke_task(command)` is the invoke
door (`invoke x ...`). Both doors parse only
(argparse or invoke's parser), then hand the values to the same edge (`Command.call`), which

- checks them: required flags, one flag of an exclusive group, choices, typed values;
- selects the environment when the command asks for it (`selected_profile`);
- runs the command and turns a piper-ops error into one `error: ...` line and its exit code
  (1 refused or failed, 2 bad usage or input); `--debug` shows the traceback instead;
- turns Ctrl-C, SIGTERM and a closed standard output into one line too, after unwinding (open
  transactions roll back, temporary files go).

Unknown or mistyped flags are exit 2 in both doors, naming the flag and the closest known one:
argparse through `_Parser`, invoke through the program `adopt_invoke_program` sets up.

Like alembic's CommandLine, which builds argparse from its command functions, but as plain data:
nothing here imports a database driver, so `invoke --list` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import gc
import importlib
import inspect
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

if __package__ in (None, ""):  # pragma: no cover - run as a file, not as a module
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.errors import ConfirmationRequired, PiperError, UsageError  # noqa: E402
from services.profiles import Profile, load_profile, profile_names  # noqa: E402
from services.project import Project, current_project, select_environment  # noqa: E402

ENV_HELP = "environment to act on (default: $PIPER_ENV, then PIPER_ENV in .env)"
DEBUG_HELP = "show tracebacks and debug logging"


@dataclass(frozen=True)
class Flag:
    """One flag of a command, declared once for both doors.

    `parse` turns the flag's text into its value (raising ValueError with a reason); a switch
    takes no value; a positional flag is `PATH ...` in the script door and a repeatable `--NAME`
    in the invoke door; flags that share an `exclusive` group may not be given together.
    """

    name: str
    help: str
    switch: bool = False
    required: bool = False
    choices: tuple[str, ...] = ()
    default: Any = None
    parse: Callable[[str], Any] | None = None
    metavar: str | None = None
    exclusive: str | None = None
    positional: bool = False

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def help_text(self) -> str:
        return f"{self.help}; required" if self.required else self.help


class FlagError(UsageError):
    """A flag is missing, unknown, or has a value it cannot take (exit 2)."""

    def __str__(self) -> str:
        return f"{super().__str__()}; see --help"


@dataclass(frozen=True)
class Command:
    """A command: its name (as invoke shows it), summary, flags, and what it does.

    `run` names the function that does it, as "module:function"; it receives the checked values
    as an argparse.Namespace (one attribute per flag, plus `env` and `debug`) and returns the exit
    code. It is imported only when the command runs: listing and parsing need the declaration only.
    """

    name: str
    summary: str
    run: str
    flags: tuple[Flag, ...] = ()
    #: The --env flag's help, or None for a command that takes no --env.
    env_help: str | None = ENV_HELP
    script: str | None = field(default=None, compare=False)
    """The script of scripts/ that is this command's other door, if any."""

    @property
    def all_flags(self) -> tuple[Flag, ...]:
        common = (Flag("env", self.env_help),) if self.env_help is not None else ()
        return (*self.flags, *common, Flag("debug", DEBUG_HELP, switch=True))

    # --- the script door ---------------------------------------------------------------

    def parser(self) -> argparse.ArgumentParser:
        """Return the argparse parser of the script door (it parses; `call` checks)."""
        cli = _Parser(description=self.summary, prog=f"scripts/{self.script}.py" if self.script else None)
        for flag in self.all_flags:
            if flag.positional:
                cli.add_argument(flag.name, nargs="*", metavar=flag.metavar or flag.name.upper(), help=flag.help_text)
            elif flag.switch:
                cli.add_argument(flag.option, dest=flag.name, action="store_true", help=flag.help_text)
            else:
                metavar = flag.metavar or ("{" + ",".join(flag.choices) + "}" if flag.choices else None)
                cli.add_argument(flag.option, dest=flag.name, metavar=metavar, help=flag.help_text)
        return cli

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Parse argv as the script door does, then run the command; return the exit code.

        A usage error argparse finds (an unknown flag, a flag without its value) and --help
        return their exit code too (2, 0) rather than leaving through SystemExit.
        """
        try:
            args = self.parser().parse_args(argv)
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2
        return self.call(vars(args))

    # --- the edge, for both doors ------------------------------------------------------

    def call(self, values: Mapping[str, Any]) -> int:
        """Check the values, run the command inside the edge, and return its exit code."""
        debug = bool(values.get("debug"))
        configure_logging(debug)
        with _termination_unwinds():
            try:
                code = self.function()(self.bind(values))
                sys.stdout.flush()  # inside the edge: a reader gone away is told like any other failure
                return code
            except PiperError as exc:
                if debug:
                    raise
                print(f"error: {exc}", file=sys.stderr)
                return exc.exit_code
            except KeyboardInterrupt:
                print("error: interrupted; nothing was changed by the step that was running", file=sys.stderr)
                return 1
            except Terminated as exc:
                print("error: terminated; nothing was changed by the step that was running", file=sys.stderr)
                return int(exc.code or 1)
            except BrokenPipeError:
                # Whoever read standard output stopped reading (`| head`): what they got is incomplete.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush into the closed pipe
                instead = " or pass --output FILE" if any(f.name == "output" for f in self.flags) else ""
                print(f"error: standard output was closed before everything was written; "
                      f"redirect it to a file (> FILE){instead}", file=sys.stderr)
                return 1

    def function(self) -> Callable[[argparse.Namespace], int]:
        """Return the function `run` names."""
        module, _, name = self.run.partition(":")
        function: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(module), name)
        return function

    def bind(self, values: Mapping[str, Any]) -> argparse.Namespace:
        """Return the checked values of every flag; raise FlagError naming the first problem."""
        missing = [f.option for f in self.all_flags if f.required and values.get(f.name) in (None, "", [], ())]
        if missing:
            raise FlagError(f"the following arguments are required: {', '.join(missing)}")
        bound: dict[str, Any] = {}
        chosen: dict[str, Flag] = {}
        for flag in self.all_flags:
            value = values.get(flag.name)
            if flag.exclusive and value not in (None, False, [], ()):
                if flag.exclusive in chosen:
                    other = chosen[flag.exclusive].option
                    raise FlagError(f"argument {flag.option}: not allowed with argument {other}")
                chosen[flag.exclusive] = flag
            bound[flag.name] = _value(flag, value)
        return argparse.Namespace(**bound)


def _value(flag: Flag, value: Any) -> Any:
    if flag.switch:
        return bool(value)
    if flag.positional:
        return list(value or [])
    if value is None:
        return flag.default
    text = str(value)
    if flag.choices and text not in flag.choices:
        allowed = ", ".join(repr(choice) for choice in flag.choices)
        raise FlagError(f"argument {flag.option}: invalid choice: {text!r} (choose from {allowed})")
    if flag.parse is None:
        return text
    try:
        return flag.parse(text)
    except ValueError as exc:
        raise FlagError(f"argument {flag.option}: {exc}") from None


def positive_int(text: str) -> int:
    """Return text as a whole number of at least 1 (a Flag's `parse`)."""
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def unknown_flag(flag: str, known: Sequence[str]) -> FlagError:
    """Return the error for a flag no command knows, naming the closest known one."""
    close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
    return FlagError(f"unknown option {flag}" + (f" (did you mean {close[0]}?)" if close else ""))


class _Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_abbrev=False, **kwargs)

    def error(self, message: str) -> NoReturn:
        # One line and exit 2, as everywhere in piper-ops.
        self.exit(2, f"error: {message}; see --help\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def,override]
        # Name a mistyped flag before argparse complains about the required one it hides.
        known = [option for action in self._actions for option in action.option_strings]
        for token in sys.argv[1:] if args is None else args:
            flag = str(token).split("=", 1)[0]
            if flag == "--":
                break
            if flag.startswith("--") and flag not in known:
                self.exit(2, f"error: {unknown_flag(flag, known)}\n")
        return super().parse_args(args, namespace)


# --- what commands share -----------------------------------------------------------------


def selected_profile(env: str | None) -> tuple[Profile, Project]:
    """Return the profile of the selected environment (--env, $PIPER_ENV, .env) and its project."""
    project = current_project()
    name = select_environment(env, project, profile_names(project))
    return load_profile(name, project), project


def confirm(question: str, *, yes: bool) -> None:
    """Ask a yes/no question on the terminal (stderr); without a terminal, require --yes.

    Raises ConfirmationRequired when the answer is not yes: nothing is changed then.
    """
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationRequired(f"{question.rstrip('?')}: no terminal to confirm on; pass --yes to proceed")
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise ConfirmationRequired("not confirmed; nothing was changed")


def confirm_by_name(name: str, consequence: str, question: str, *, yes: bool) -> None:
    """Ask the user to type the environment's name (for what deletes data); without a terminal, require --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationRequired(f"{consequence}; run it in a terminal to confirm, or pass --yes")
    print(f"{question} Type {name} to confirm: ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip() != name:
        raise ConfirmationRequired("not confirmed; nothing was changed")


def ask(question: str, *, default: str = "", check: Callable[[str], Any] = str, flag: str) -> Any:
    """Ask on the terminal (stderr) as `Question [default]: `; return check(answer), asking again while it refuses.

    An empty answer takes the default. `check` raises UsageError naming what is wrong; that line is
    shown and the question asked again. Without a terminal there is no one to ask: raise a FlagError
    naming the flag that gives the answer. End of input (Ctrl-D) leaves without an answer.
    """
    if not sys.stdin.isatty():
        raise FlagError(f"{question}: no terminal to ask on; pass {flag}")
    while True:
        print(f"{question} [{default}]: " if default else f"{question}: ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            print(file=sys.stderr)
            raise ConfirmationRequired(f"no answer to {question!r}; nothing was changed")
        try:
            return check(line.strip() or default)
        except UsageError as exc:
            print(f"  {exc}", file=sys.stderr)


def run_script(name: str, argv: list[str]) -> int:
    """Run scripts/<name>.py's main(argv): how setup runs a profile's setup steps."""
    code: int = importlib.import_module(f"scripts.{name}").main(argv)
    return code


def configure_logging(debug: bool) -> None:
    """Log to stderr as `warning: ...` lines, like every other message of piper-ops."""
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s: %(message)s")


@contextlib.contextmanager
def _termination_unwinds() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C while a command runs, so transactions roll back and temporary files go."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminated)
    except ValueError:  # not the main thread: the signal is not ours to handle
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Terminated(SystemExit):
    """SIGTERM arrived: raised where the command stands, so that it unwinds like Ctrl-C (exit 128 + 15)."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated(128 + signum)


# --- the script door as a process ----------------------------------------------------------


def run_command(main: Callable[[], int]) -> NoReturn:
    """Run a script's main as a command, then exit at once with its code.

    Each script turns the cycle collector off before its imports: start-up only makes objects
    that live until the end. Here start-up is over, so they are frozen out of every later
    collection and the collector is turned back on (about 20 ms a command; docs/BENCHMARKS.md).
    """
    gc.freeze()
    gc.enable()
    with _termination_unwinds():
        code = main()
    exit_now(code)


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
            if code:
                continue  # the command failed and said so in its one line already
            code = 1
            try:
                sys.stderr.write(f"error: the output could not be written completely ({exc.strerror or exc})\n")
                sys.stderr.flush()
            except OSError:
                pass
    os._exit(code)


# --- the invoke door -----------------------------------------------------------------------


def invoke_task(command: Command) -> Any:
    """Return an invoke Task for the command: invoke parses the flags, `Command.call` does the rest.

    Long flags only: invoke's automatic one-letter flags meant different things in different
    tasks (-d was --debug in one, --data-file in another) and ran out of letters.
    """
    from invoke import Exit, Task

    def body(c: Any, **values: Any) -> None:
        code = command.call(values)
        if code:
            raise Exit(code=code)

    parameters = [inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [inspect.Parameter(flag.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                     default=False if flag.switch else None) for flag in command.all_flags]
    body.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    body.__doc__ = command.summary
    body.__name__ = command.name.replace("-", "_")
    return Task(body, name=command.name, auto_shortflags=False,
                help={flag.name: flag.help_text + (" (repeat for several)" if flag.positional else "")
                      for flag in command.all_flags},
                iterable=[flag.name for flag in command.all_flags if flag.positional])


def adopt_invoke_program() -> None:
    """Let the running `invoke` report a parse error as piper-ops does: one line, exit 2.

    invoke prints its parser's own `No idea what '--usernme' is!` and exits 1, which reads as
    "refused" in piper-ops' exit codes. tasks.py is loaded by the running invoke program (the one
    `invoke` and `python -m invoke` start) before it parses the task flags, so it hands that
    program this subclass, whose only change is how a parse error is told.
    """
    from invoke import Program, main

    if type(main.program) is Program:
        main.program.__class__ = _piper_program()


def _piper_program() -> type:
    # Built on first use: invoke is imported by the invoke door only.
    from invoke import Exit, ParseError, Program

    class PiperProgram(Program):
        def parse_tasks(self) -> None:
            try:
                super().parse_tasks()
            except ParseError as exc:
                raise Exit(f"error: {_parse_error(exc, self.collection)}", code=2) from None

    return PiperProgram


def _parse_error(exc: Exception, collection: Any) -> str:
    """Word an invoke parse error as every piper-ops command does."""
    context = getattr(exc, "context", None)
    message = str(exc)
    unknown = re.fullmatch(r"No idea what '(.*)' is!", message)
    needs_value = re.fullmatch(r"Flag <Argument: ([\w-]+).*> needed value and was not given one!", message)
    if unknown and getattr(context, "name", None):  # inside a task: a flag it does not know
        return str(unknown_flag(unknown[1], sorted(context.flags)))
    if unknown:
        close = difflib.get_close_matches(unknown[1], list(collection.task_names), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"unknown command {unknown[1]!r}{hint}; see `invoke --list`"
    if needs_value:
        return str(FlagError(f"argument --{needs_value[1].replace('_', '-')}: expected one argument"))
    return str(FlagError(message.rstrip("!")))

