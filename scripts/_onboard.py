"""`invoke onboard`: the tester wizard. It asks, shows the plan, and only then acts.

Every question is also a flag (--username, --email, --data FILE or --no-import, --yes), so it runs
unattended too; without a terminal, a question no flag answers is an error (exit 2) unless --yes
takes its default. Every answer is checked as it is given (a wrong one is told and asked again)
and all of them together before anything is written (services/onboarding.py): Ctrl-C at any
question changes nothing. Then it runs setup, creates the user, imports the data, checks isolation.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from scripts import _cli, _commands, _environments
from scripts.import_user_data import show_import_plan
from services import identifiers, onboarding
from services.environments import setup
from services.profiles import Profile
from services.users import imports

#: The environment onboard acts on without --env: the external tester's (not $PIPER_ENV's).
DEFAULT_ENV = "tester"


def run_onboard(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env or DEFAULT_ENV)
    onboarding.check_profile(profile, project, allow_branch_mismatch=args.allow_branch_mismatch)
    asking = sys.stdin.isatty()
    if not asking and not args.yes:
        _require_flags(args)
    if asking:
        print(f"Onboarding a tester into environment {profile.name!r}; Ctrl-C at any question changes nothing.",
              file=sys.stderr)
    username = _answer(args.username, args.yes, "Username", lambda: onboarding.default_username(profile),
                       identifiers.validate_username, "--username NAME")
    data = _data(args, username)
    # Given by flag, an email is only checked here for its form: the plan checks it against the database.
    email = _answer(args.email, args.yes, "Email", lambda: onboarding.default_email(profile, project, username, data),
                    lambda text: onboarding.check_email(profile, project, username, text, data), "--email ADDRESS",
                    given_check=identifiers.validate_email)
    mode = "merge" if args.merge else "replace" if args.replace else "refuse"
    plan = onboarding.plan_onboarding(profile, project, username, email, data, mode=mode,  # type: ignore[arg-type]
                                      allow_branch_mismatch=args.allow_branch_mismatch)
    _show_plan(plan)
    if plan.in_place:
        print(f"{username} is already onboarded in {profile.name}; checking that everything is still in place",
              file=sys.stderr)
    else:
        _cli.confirm(f"Onboard {username} into {profile.name}?", yes=args.yes)
        if plan.import_plan is not None and plan.import_plan.action != "unchanged":
            _show_import(plan)
            _cli.confirm(f"Import {plan.username} into {profile.name}?", yes=args.yes)
    result = onboarding.run_onboarding(plan, _cli.run_script, lambda stage, detail: _render(plan, stage, detail))
    if not result.isolated:
        failed = ", ".join(check.name for check in result.isolation if not check.passed)
        print(f"isolation does NOT hold in {profile.name}: {failed} failed; see `invoke verify-isolation --env "
              f"{profile.name}`", file=sys.stderr)
        return 1
    if result.changed:
        print(f"onboard: {username} ({email}) is ready in {profile.name}")
    else:
        print(f"onboard: {username} was already onboarded in {profile.name}; nothing changed")
    _next_steps(profile, username)
    return 0


# --- the questions ------------------------------------------------------------------------------


def _require_flags(args: argparse.Namespace) -> None:
    """Without a terminal, every question needs its flag (or --yes for its default): say which are missing."""
    missing = [flag for flag, given in (("--username NAME", args.username), ("--email ADDRESS", args.email),
                                        ("--data FILE or --no-import", args.data or args.no_import)) if not given]
    if missing:
        raise _cli.FlagError(f"no terminal to ask on; pass {', '.join(missing)} (or --yes to take the defaults)")


def _answer(given: str | None, yes: bool, question: str, default: Callable[[], str], check: Callable[[str], str],
            flag: str, *, given_check: Callable[[str], str] | None = None) -> str:
    """The answer a flag gives (checked), else the default under --yes, else the one asked for (default shown)."""
    if given is not None:
        return (given_check or check)(given)
    if yes:
        return (given_check or check)(default())
    return _cli.ask(question, default=default(), check=check, flag=flag)  # type: ignore[no-any-return]


def _data(args: argparse.Namespace, username: str) -> onboarding.DataFile | None:
    if args.no_import:
        return None
    if args.data is not None:
        return onboarding.read_data(Path(args.data), username)
    if args.yes:
        return None  # the default: no data
    return _cli.ask("Data to import, if any (a personal-data file, or an export from `invoke export-user`; "
                    "empty for none)", check=lambda text: onboarding.read_data(Path(text), username) if text else None,
                    flag="--data FILE or --no-import")


# --- what it shows ------------------------------------------------------------------------------


def _show_plan(plan: onboarding.OnboardingPlan) -> None:
    profile = plan.profile
    commands = {command.script: command.name for command in _commands.ALL if command.script}
    where = f"{profile.database.data_dir or 'postgres_data/' + profile.name}, port {profile.database.port}"
    print(f"onboard will, in {profile.name}:", file=sys.stderr)
    print(f"  - set up the environment as `invoke setup --env {profile.name}` does ({where}, database "
          f"{profile.database.name})", file=sys.stderr)
    if plan.data is not None and plan.data.kind == "export":
        print(f"  - import {plan.data.path.name}, an export, as `invoke import-user` does (asked below)",
              file=sys.stderr)
    for script, argv in plan.steps.steps:
        print(f"  - run its setup step `invoke {commands.get(script, script)} {' '.join(argv)}`", file=sys.stderr)
    print(f"  - check isolation as `invoke verify-isolation --env {profile.name}` does", file=sys.stderr)
    if plan.stopped:
        print(f"  (the server of {profile.name} is not running: what it holds for {plan.username} is checked once "
              "setup has started it, before the import and the steps)", file=sys.stderr)


def _show_import(plan: onboarding.OnboardingPlan) -> None:
    """import-user's own consent screen: where the document comes from and what it changes."""
    assert plan.import_plan is not None and plan.data is not None
    show_import_plan(plan.import_plan, plan.profile.name, str(plan.data.path))


def _render(plan: onboarding.OnboardingPlan, stage: onboarding.Stage, detail: object) -> None:
    """Show each stage as the command it stands for would."""
    if detail is None:
        return
    if stage == "setup" and isinstance(detail, setup.SetupReport):
        _environments.print_setup_report(detail)
    elif stage == "import" and isinstance(detail, imports.ImportResult) and plan.data is not None:
        print(f"imported {plan.username} into {plan.profile.name} from {plan.data.path.name} ({detail.action}): "
              f"id {detail.user_id}")
    elif stage == "isolation" and isinstance(detail, list):
        for check in detail:
            print(f"{'PASS' if check.passed else 'FAIL'}  {check.name}: {check.detail}")


def _next_steps(profile: Profile, username: str) -> None:
    declared = {command.name for command in _commands.ALL}
    env = profile.name
    hints = [
        ("status", "`invoke status`", "see every environment, its server and its users"),
        ("env", f"`invoke env --env {env}`", "the connection variables the Piper app reads"),
        ("export-user", f"`invoke export-user --env {env} --username {username} --output exports/{username}.json`",
         "keep a copy of your data"),
        ("db-backup", f"`invoke db-backup --env {env}`", "back up the whole database"),
        ("verify-isolation", f"`invoke verify-isolation --env {env}`", "check isolation again at any time"),
        ("doctor", f"`invoke doctor --env {env}`", "if anything goes wrong: what is wrong and how to fix it"),
    ]
    print("next:")
    for name, command, why in hints:
        if name in declared:
            print(f"  {command}  {why}")
