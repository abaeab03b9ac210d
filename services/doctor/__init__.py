"""`invoke doctor`: checks the machine, the checkout and an environment, and says how to fix what is wrong.

Each check is a small function (machine, local, databases, checkout) that returns `Check`s; this
module picks which to run and returns them all in a `DoctorResult`. It never prints and never
changes anything: no lock file, no `.env` write, no server start, no cache refresh (the report
file `--report` names is written by report.write_report, at the caller's request).

Which checks run:
- an environment chosen by --env, $PIPER_ENV or `.env`: the machine, the checkout, and every
  check of that environment, connections included (passwords, stamp, schema revision);
- none chosen: the machine, the checkout, and each environment's basics, read from its files
  (set up, running, data directory, socket, pid file, port, leftovers), without connecting.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from services import envfile
from services.doctor import checkout, databases, local, machine
from services.doctor.checks import MACHINE, PROJECT, Check, Context, fail
from services.errors import PiperError, UsageError
from services.profiles import Profile, load_profile, profile_names
from services.project import ENV_VARIABLE, Project

__all__ = ["Check", "DoctorResult", "run_doctor"]


@dataclass(frozen=True)
class DoctorResult:
    """Every check of one doctor run, in order: machine, project, then each environment's."""

    checks: tuple[Check, ...]
    environment: str | None
    """The environment checked in full, or None (machine, checkout and every environment's basics)."""
    selected_by: str | None
    environments: tuple[str, ...]
    head: str | None

    def count(self, status: str) -> int:
        return sum(1 for c in self.checks if c.status == status)

    @property
    def failed(self) -> bool:
        return any(c.status == "fail" for c in self.checks)


def run_doctor(project: Project, environment: str | None = None) -> DoctorResult:
    """Run the checks and return them; an unknown --env is a UsageError, anything found is a Check."""
    names = profile_names(project)
    if environment is not None and environment not in names:
        raise UsageError(f"unknown environment {environment!r}; known environments: {', '.join(names) or 'none'}")
    # The slow waits (a pg_restore that is a Perl wrapper on Debian, importing the driver) overlap
    # with the checks that read files.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="piper-doctor") as pool:
        client_tool = pool.submit(machine.client_tool)
        if environment or os.environ.get(ENV_VARIABLE) or project.env_file.exists():  # it will connect
            pool.submit(_preload_driver)
        return _run(project, environment, names, client_tool.result)


def _preload_driver() -> None:
    import psycopg  # noqa: F401


def _run(project: Project, environment: str | None, names: list[str],
         client_tool: Callable[[], tuple[str | None, str | None]]) -> DoctorResult:
    found: list[Check] = []
    selected, selected_by = environment, "--env" if environment else None
    env_check = None
    if selected is None:
        selected, selected_by, env_check = _selection(project, names)
    profiles: list[Profile] = []
    for name in names:
        try:
            profiles.append(load_profile(name, project))
        except PiperError as exc:
            found.append(replace(fail("profile", str(exc), "fix the profile (the message names the key)"),
                                 scope=name))
    python = machine.python_check()
    account_check, account = machine.account_check()
    context = Context(project, profiles, account)
    machine_checks = [python, account_check, *machine.binaries_checks(context)]
    machine_checks += [*machine.disk_checks(context), *machine.orphan_checks()]
    head: str | None = None
    project_checks: list[Check] = []
    try:
        head = databases.head_revision(project)
    except (RuntimeError, OSError, PiperError) as exc:
        project_checks.append(fail("migrations", f"cannot read the migrations' head: {exc}",
                                   "merge the heads (`alembic merge`) or restore migrations/"))
    profile = next((p for p in profiles if p.name == selected), None)
    needed = profile is not None and not profile.hosted
    file_check = checkout.env_file_check(project, needed=needed)
    project_checks.append(file_check)
    if env_check is not None and file_check.status == "ok":  # else the file's own check already says why
        project_checks.append(env_check)
    project_checks += checkout.partial_checks(project, names)
    env_checks: list[Check] = []
    for each in profiles:
        if profile is None or each.name == profile.name:
            found_here = _environment(context, each, head, full=profile is not None)
            env_checks += [replace(c, scope=each.name) for c in found_here]
    # After the environments: it compares the client tools with the versions their servers run.
    machine_checks.append(machine.client_tools_check(context, client_tool()))
    checks = [replace(c, scope=MACHINE) for c in machine_checks] + [replace(c, scope=PROJECT) for c in project_checks]
    return DoctorResult(tuple(checks + found + env_checks), profile.name if profile else None, selected_by,
                        tuple(names), head)


def _selection(project: Project, names: list[str]) -> tuple[str | None, str | None, Check | None]:
    """Return the environment $PIPER_ENV or `.env` selects, how, and the `.env` check if `.env` cannot be read."""
    chosen = os.environ.get(ENV_VARIABLE)
    if chosen:
        by = f"${ENV_VARIABLE}"
    else:
        try:
            chosen, by = envfile.read(project.env_file).get(ENV_VARIABLE), ".env"
        except PiperError as exc:
            return None, None, fail("selection", str(exc), "fix it, or move it away and run `invoke setup --env NAME`")
    if chosen and chosen not in names:
        return None, None, fail("selection", f"{by} selects environment {chosen!r}, which has no profile "
                                f"(profiles: {', '.join(names)})", "run `invoke setup --env NAME` with one of them")
    return (chosen, by, None) if chosen else (None, None, None)


def _environment(context: Context, profile: Profile, head: str | None, *, full: bool) -> list[Check]:
    """The checks of one environment: its basics, and with full its connections, branch and backups."""
    project = context.project
    if profile.hosted:
        if not full:
            return [databases.hosted_basics(profile, project)]
        checks = [databases.password_check(profile, project, None)]
        if checks[0].status == "ok" and head is not None:
            checks.append(databases.schema_check(profile, project, None, head))
        return checks + [checkout.branch_check(profile, project)]
    facts = local.server_facts(profile, context)
    if isinstance(facts, Check):
        return [facts]
    server, state = facts
    checks = local.data_dir_checks(context, profile, server, state, full=full)
    if state.initialized:
        checks += [local.socket_check(profile, server), local.pid_file_check(profile, server, state)]
    checks.append(local.server_check(profile, server, state, full=full))
    checks += local.port_checks(context, profile, server, state)
    checks += local.leftover_checks(profile, server)
    if not full:
        return checks
    if state.initialized:  # else the data-dir check said to set it up: nothing to connect to
        sockets = str(server.socket_dir) if state.running else None
        passwords = databases.password_check(profile, project, sockets)
        checks.append(passwords)
        if head is not None and passwords.status != "fail":
            checks.append(databases.schema_check(profile, project, sockets, head))
    checks.append(checkout.branch_check(profile, project))
    if state.initialized:
        checks += [checkout.database_url_check(profile, project), checkout.backup_check(profile, project)]
    return checks
