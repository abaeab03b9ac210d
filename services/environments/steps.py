"""The profile's setup steps: scripts that `invoke setup` runs after migrating, planned before anything changes."""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.errors import PiperError, UsageError
from services.profiles import Profile
from services.project import Project
from services.users import documents

StepRunner = Callable[[str, list[str]], int]


@dataclass(frozen=True)
class StepPlan:
    """The setup steps to run, as (script, argv), and the optional ones skipped (with why)."""

    steps: tuple[tuple[str, tuple[str, ...]], ...]
    skipped: tuple[str, ...]


def plan_setup_steps(profile: Profile, project: Project, data_file: str | None = None) -> StepPlan:
    """Work out the profile's setup steps before anything is provisioned.

    A data file a step needs but that does not exist is an error now, not after a server was
    created and selected: bad input changes nothing.
    """
    # A data file given at setup is relative to where the user stands; the profile's, to the project.
    if data_file:
        chosen, origin = Path(data_file).resolve(), "--data-file"
    elif profile.personal_data.data_file:
        chosen, origin = project.root / profile.personal_data.data_file, f"personal_data.data_file of {profile.name}"
    else:
        chosen, origin = None, ""
    values = {"username": profile.default_user.username, "email": profile.default_user.email,
              "data_file": str(chosen) if chosen else ""}
    steps: list[tuple[str, tuple[str, ...]]] = []
    skipped: list[str] = []
    for step in profile.setup_steps:
        needed = {name for arg in step.args for _, name, _, _ in string.Formatter().parse(arg) if name}
        missing = sorted(name for name in needed if not values.get(name))
        if missing and step.optional:
            skipped.append(f"{step.script} (no {', '.join(missing)})")
            continue
        if missing:
            raise UsageError(f"environment {profile.name!r} needs a data file at setup; pass --data-file PATH")
        consent: tuple[str, ...] = ()
        if "data_file" in needed and chosen is not None:
            if not chosen.exists():
                raise UsageError(f"{chosen} ({origin}) does not exist; put the personal-data file there "
                                 "(shape in docs/USER_DATA.md), or pass --data-file FILE to setup")
            if "username" in needed:  # the file is for the user the step names: read it now, whole
                document = documents.load_personal_data(chosen, values["username"])
                # A bare object of preferences names no user. Setup never asks: the step names the user
                # (the profile's default user) and the file is the one chosen for this environment, so
                # the migration goes to that user and says so (docs/USER_DATA.md).
                if not document.names_user and step.script == "migrate_personal_data":
                    consent = ("--yes",)
        steps.append((step.script,
                      tuple(arg.format(**values) for arg in step.args) + consent + ("--env", profile.name)))
    return StepPlan(tuple(steps), tuple(skipped))


def run_setup_steps(plan: StepPlan, run_step: StepRunner) -> None:
    """Run the planned setup steps in order through run_step(script, argv); stop at the first failure."""
    for script, args in plan.steps:
        code = run_step(script, list(args))
        if code != 0:
            failure = PiperError(f"setup step `{script} {' '.join(args)}` failed (exit {code}); fix it and run setup again")
            failure.exit_code = code  # bad input stays exit 2, a refusal exit 1
            raise failure
