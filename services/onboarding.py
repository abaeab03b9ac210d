"""`invoke onboard`: a new tester's first hour in one command, every answer checked before anything changes.

The wizard (scripts/_onboard.py) asks; this module checks the answers and carries them out, as
the commands a tester would otherwise type one by one:

1. `invoke setup` (services/environments/setup.py, then the profile's setup steps), with the tester
   as the profile's default user: the steps create the tester's user as `invoke create-user` does,
   and the profile's migrate step takes the tester's personal-data file, if one is given;
2. an export from `invoke export-user`, if one is given, imported with import-user's own plan
   (services/users/imports.py), between provisioning and the steps (which then find the user);
3. `invoke verify-isolation` (services/isolation.py).

`plan_onboarding` reads and checks everything (the data file whole, and, when the server runs,
what the database already holds) and writes nothing; `run_onboarding` acts on that plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from services import identifiers, isolation
from services.environments import setup, steps
from services.errors import PiperError, UsageError
from services.files import read_regular_file
from services.postgres import servers
from services.profiles import DefaultUser, Profile
from services.project import Project
from services.users import documents, imports, store

DataKind = Literal["personal-data", "export"]
Stage = Literal["setup", "import", "steps", "isolation"]
#: Told before each stage starts (detail None) and after it (detail its result), for the edge to render.
Progress = Callable[[Stage, Any], None]
#: What an export document starts with (services/users/documents.export_head); a personal-data file does not.
_EXPORT_MARK = f'"format": "{documents.FORMAT}"'.encode()


@dataclass(frozen=True)
class DataFile:
    """A data file the tester brings, read whole and checked: a personal-data file or an export."""

    path: Path
    kind: DataKind
    raw: bytes = dataclasses.field(repr=False, default=b"")
    personal: documents.PersonalDataFile | None = None
    export: documents.ExportDocument | None = None

    @property
    def email(self) -> str | None:
        """The email the export carries (None for a personal-data file)."""
        return self.export.user.get("email") if self.export is not None else None


@dataclass(frozen=True)
class Found:
    """What the environment already holds for the tester, read while its server ran."""

    email: str | None
    """The user's email; None when there is no such user yet."""
    email_owner: str | None
    """Another user who holds the tester's email, if any."""
    migrated: bool
    """The personal-data file was migrated into the user already (same SHA-256)."""


@dataclass(frozen=True)
class OnboardingPlan:
    """Every answer, checked; what `run_onboarding` will do."""

    profile: Profile
    """The profile with the tester as its default user: what setup and its steps act for."""
    project: Project
    username: str
    email: str
    data: DataFile | None
    steps: steps.StepPlan
    import_plan: imports.ImportPlan | None
    found: Found | None
    """What the database held when planned; None when its server was not running (not known yet)."""
    allow_branch_mismatch: bool = False
    stopped: bool = False
    """The environment has a cluster whose server was not running when planned: what it holds for the
    tester is checked once setup has started it, before the import and the steps."""

    @property
    def in_place(self) -> bool:
        """Whether the user and their data were already there when planned (setup may still have work)."""
        if self.found is None or self.found.email != self.email:
            return False
        if self.data is None:
            return True
        if self.data.kind == "personal-data":
            return self.found.migrated
        return self.import_plan is not None and self.import_plan.action == "unchanged"


@dataclass(frozen=True)
class OnboardingResult:
    setup: setup.SetupReport
    imported: imports.ImportResult | None
    isolation: list[isolation.CheckResult]
    changed: bool

    @property
    def isolated(self) -> bool:
        return all(check.passed for check in self.isolation)


def default_username(profile: Profile) -> str:
    """Return the username offered first: the profile's default user's."""
    return profile.default_user.username


def default_email(profile: Profile, project: Project, username: str, data: DataFile | None = None) -> str:
    """Return the email offered for username: theirs if they exist, the export's, the profile's, else a fake one."""
    found = _look_up(profile, project, username, "", None)
    if found is not None and found.email:
        return found.email
    if data is not None and data.email:
        return data.email
    if username == profile.default_user.username:
        return profile.default_user.email
    return f"{username}@example.invalid"


def check_profile(profile: Profile, project: Project, *, allow_branch_mismatch: bool = False) -> None:
    """Refuse an environment onboard cannot set up (hosted production; a branch the profile refuses)."""
    if profile.hosted:
        raise UsageError(f"environment {profile.name!r} is hosted: its users arrive by `invoke import-user --env "
                         f"{profile.name}` with an invitation, not by onboard; pass --env tester")
    setup.check_branch(profile, project, allow_mismatch=allow_branch_mismatch)


def check_email(profile: Profile, project: Project, username: str, email: str, data: DataFile | None = None) -> str:
    """Return the email when valid and free for username (as far as a running server tells); raise UsageError."""
    identifiers.validate_email(email)
    _check_found(profile, username, email, data, _look_up(profile, project, username, email, None))
    return email


def _check_found(profile: Profile, username: str, email: str, data: DataFile | None, found: Found | None) -> None:
    if found is None:
        return
    if found.email_owner is not None:
        raise UsageError(f"email {email!r} already belongs to user {found.email_owner!r} in {profile.name}; "
                         "choose another email")
    if (data is None or data.kind != "export") and found.email not in (None, email):
        raise UsageError(f"user {username!r} already exists in {profile.name} with another email; give that "
                         "email, or choose another username")


def read_data(path: Path, username: str) -> DataFile:
    """Read and check a data file meant for username: an export (`invoke export-user`) or a personal-data file."""
    path = Path(path).expanduser()
    raw = read_regular_file(path, documents.MAX_DOCUMENT_BYTES, what="data file")
    if _EXPORT_MARK in raw[:256]:
        with documents.collector_paused():
            document = documents.parse_export(raw, str(path))
        owner = document.user["username"]
        if owner != username:
            raise documents.UserDataError(f"{path} holds user {owner!r}, not {username!r}; pass --username {owner}, "
                                          f"or the file meant for {username!r}")
        return DataFile(path.resolve(), "export", raw, export=document)
    return DataFile(path.resolve(), "personal-data", personal=documents.load_personal_data(path, username))


def plan_onboarding(profile: Profile, project: Project, username: str, email: str, data: DataFile | None, *,
                    mode: imports.ImportMode = "refuse", allow_branch_mismatch: bool = False) -> OnboardingPlan:
    """Check every answer against the profile, the data file and what the database holds; write nothing."""
    check_profile(profile, project, allow_branch_mismatch=allow_branch_mismatch)
    identifiers.validate_username(username)
    identifiers.validate_email(email)
    personal = data.personal if data is not None else None
    if personal is not None and not any("{data_file}" in arg for step in profile.setup_steps for arg in step.args):
        raise UsageError(f"environment {profile.name!r} takes no personal-data file (no setup step of "
                         f"{profile.source.name} names {{data_file}}); leave the data out, or pass --env tester")
    # The steps act for the tester: the profile's create-user step creates them, its migrate step takes their file.
    tester = dataclasses.replace(profile, default_user=DefaultUser(username, email))
    step_plan = steps.plan_setup_steps(tester, project, str(personal.path) if personal is not None else None)
    found = _look_up(profile, project, username, email, personal)
    _check_found(profile, username, email, data, found)
    import_plan = None
    if data is not None and data.kind == "export":
        import_plan = _plan_import(profile, project, data, username, email, mode, known=found is not None)
    state = servers.state(servers.locate(profile, project))  # never hosted: check_profile refused it
    return OnboardingPlan(tester, project, username, email, data, step_plan, import_plan, found,
                          allow_branch_mismatch, state.initialized and not state.running)


def run_onboarding(plan: OnboardingPlan, run_step: steps.StepRunner, progress: Progress) -> OnboardingResult:
    """Set up the environment, import the tester's export, run the setup steps, check isolation; return what happened.

    run_step(script, argv) runs a setup step as `invoke setup` does (the edge's runner).
    """
    profile, project = plan.profile, plan.project
    progress("setup", None)
    report = setup.setup_environment(profile, project, allow_branch_mismatch=plan.allow_branch_mismatch)
    progress("setup", report)
    if plan.found is None:
        _check_now(plan)
    imported = None
    if plan.import_plan is not None and plan.data is not None:
        progress("import", None)
        imported = _apply_import(plan)
        progress("import", imported)
    progress("steps", None)
    steps.run_setup_steps(plan.steps, run_step)
    progress("steps", plan.steps)
    progress("isolation", None)
    checks = isolation.verify_isolation(profile, project)
    progress("isolation", checks)
    changed = bool(report.changes) or not plan.in_place
    return OnboardingResult(report, imported, checks, changed)


def _plan_import(profile: Profile, project: Project, data: DataFile, username: str, email: str,
                 mode: imports.ImportMode, *, known: bool) -> imports.ImportPlan:
    """Return import-user's plan for the export: from the database when its server runs, else as a new user's."""
    assert data.export is not None
    if known:
        with documents.collector_paused():
            plan = imports.plan_import(profile, project, data.raw, str(data.path), username, email, mode)
        if plan.action == "conflict":
            raise imports.ImportConflict(
                f"user {username!r} already exists in {profile.name} with other data than {data.path.name}; "
                "pass --merge to merge the file into it, or --replace to overwrite it")
        return plan
    # No server yet (or not running): the user cannot be known; the plan is checked again before it is applied.
    document = data.export
    return imports.ImportPlan(profile.name, store.table_for(profile), username, email, "create", document,
                              document.preferences, document.learning_data,
                              documents.changed_keys({}, document.preferences))


def _check_now(plan: OnboardingPlan) -> None:
    """Check the answers against the database once setup has run (its server was not running when onboard
    asked, or the database could not be read then), before the import and the steps write anything."""
    profile = plan.profile
    personal = plan.data.personal if plan.data is not None else None
    try:
        _check_found(profile, plan.username, plan.email, plan.data,
                     _look_up(profile, plan.project, plan.username, plan.email, personal))
    except UsageError as exc:
        then = ("once setup had started the server of {0}, which was not running when onboard asked" if plan.stopped
                else "once setup had run: the database of {0} could not be read when onboard asked")
        raise UsageError(f"{exc} (checked {then.format(profile.name)}; the import and the setup steps were not "
                         "run)") from None


def _apply_import(plan: OnboardingPlan) -> imports.ImportResult | None:
    """Apply the consented import; None when the user already held exactly this data."""
    assert plan.import_plan is not None and plan.data is not None
    consented = plan.import_plan
    profile, project = plan.profile, plan.project
    if plan.found is None:  # planned without a server: plan again, now that it runs, and hold to what was consented
        with documents.collector_paused():
            current = imports.plan_import(profile, project, plan.data.raw, str(plan.data.path), plan.username,
                                          plan.email, "refuse")
        if current.action == "unchanged":
            return None
        if current.action != consented.action:
            raise PiperError(f"user {plan.username!r} already exists in {profile.name} (its server was not running "
                             "when onboard asked); run onboard again to see what the import would change")
        consented = current
    if consented.action == "unchanged":
        return None
    return imports.apply_import(profile, project, consented)


def _look_up(profile: Profile, project: Project, username: str, email: str,
             personal: documents.PersonalDataFile | None) -> Found | None:
    """Return what the database holds for the tester, or None when its server is not running (or not reachable).

    Read only: a stopped server is not started, so answering a question never changes anything.
    """
    if profile.hosted or not servers.state(servers.locate(profile, project)).running:
        return None
    import psycopg
    from psycopg import sql

    table = sql.Identifier(store.table_for(profile))
    try:
        with store.user_data_connection(profile, project, acting_user=username) as conn:
            row = conn.execute(sql.SQL("SELECT id, email FROM {} WHERE username = %s").format(table),
                               (username,)).fetchone()
            owner = conn.execute(sql.SQL("SELECT username FROM {} WHERE email = %s AND username <> %s").format(table),
                                 (email, username)).fetchone()
            migrated = row is not None and personal is not None and conn.execute(
                "SELECT 1 FROM user_data_events WHERE event = 'migrate' AND user_id = %s AND checksum = %s",
                (row[0], personal.sha256)).fetchone() is not None
    except (PiperError, psycopg.Error):
        return None  # not set up far enough to ask (or .env lost): setup will see to it, and the steps check again
    return Found(row[1] if row else None, owner[0] if owner else None, migrated)
