"""The doctor's checks of the checkout: `.env` present and private, the branch against the profile,
the age of the last database backup, partial files killed commands left in the project."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime

from services import connection_info, db_backups, envfile, files, gitinfo
from services.doctor.checks import Check, fail, ok, warn
from services.errors import PiperError
from services.profiles import Profile
from services.project import Project

#: A backup older than this is worth a warning (the default rotation keeps daily ones).
BACKUP_MAX_AGE_DAYS = 7


def env_file_check(project: Project, *, needed: bool) -> Check:
    """`.env` is a regular file of this account's, mode 0600, readable; needed once an environment is chosen."""
    path = project.env_file
    try:
        info = os.stat(path)  # a link is read through, like envfile does: what it points to must be private
    except FileNotFoundError:
        if needed:
            return fail("env-file", f"{path} does not exist: the environment's passwords are nowhere",
                        "run `invoke setup --env NAME`: it writes .env and gets you back into your servers")
        return ok("env-file", f"no {path.name} yet (`invoke setup` writes it)", present=False)
    mode = stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(info.st_mode):
        return fail("env-file", f"{path} is not a regular file", "move it away and run `invoke setup --env NAME`",
                    present=True)
    if info.st_uid != os.geteuid():
        return fail("env-file", f"{path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()})",
                    f"`sudo chown \"$(id -un)\" {path}`", present=True, mode=f"{mode:04o}")
    if mode & 0o077:
        return fail("env-file", f"{path} has mode {mode:04o}: others can read the passwords in it",
                    f"`chmod 600 {path}` (and, if others could read it, run `invoke setup` after changing them)",
                    present=True, mode=f"{mode:04o}")
    try:
        envfile.read(path)
    except PiperError as exc:
        return fail("env-file", str(exc), "fix it, or move it away and run `invoke setup --env NAME`", present=True)
    return ok("env-file", f"{path} is yours, mode 0600", present=True, mode=f"{mode:04o}")


def database_url_check(profile: Profile, project: Project) -> Check:
    """`.env`'s DATABASE_URL (what the app reads) is the selected environment's URL as it is now."""
    stale = connection_info.stale_env_file_url(profile, project)
    if stale is not None:
        return warn("database-url", stale.split("; run ")[0], f"run `invoke setup --env {profile.name}`")
    return ok("database-url", f"{connection_info.DATABASE_URL} in {project.env_file.name} is {profile.name}'s own, "
              "or not written (another environment is selected)")


def branch_check(profile: Profile, project: Project) -> Check:
    """The checkout's branch is the one the environment's profile expects (ADR-040 branch strategy)."""
    current = gitinfo.current_branch(project.root)
    data = {"expected": profile.branch, "current": current}
    if current is None:
        return ok("branch", "not a git checkout (or no git): nothing to compare", **data)
    if current == profile.branch:
        return ok("branch", f"on branch {current!r}, as {profile.name} expects", **data)
    make = check = f"`git switch {profile.branch}`"
    if profile.branch == "production":
        make = f"{check} (make it once from main: `git switch -c production main`)"
    detail = f"on {current!r}, but {profile.name} expects branch {profile.branch!r}"
    if profile.branch_policy == "refuse":
        return fail("branch", f"{detail} (its profile refuses others)", make, **data)
    return warn("branch", detail, f"{make}, unless you mean to try this branch's code on {profile.name}'s data", **data)


def backup_check(profile: Profile, project: Project, *, now: datetime | None = None) -> Check:
    """The environment's newest database backup, and its age."""
    take = f"`invoke db-backup --env {profile.name}`"
    newest = db_backups.list_backups(profile, project)[:1]  # the one use of db_backups: keep it here
    if not newest:
        return warn("backups", f"no database backup of {profile.name} yet in backups/{profile.name}/", take, count=0)
    backup = newest[0]
    age = (now or datetime.now(UTC)) - backup.taken
    hours = age.total_seconds() / 3600
    data = {"age_hours": round(hours, 1), "taken": backup.taken.strftime("%Y-%m-%dT%H:%M:%SZ")}
    said = f"{hours:.0f} hours" if hours < 48 else f"{age.days} days"
    if age.days >= BACKUP_MAX_AGE_DAYS:
        return warn("backups", f"the newest backup, {backup.path.name}, is {said} old", take, **data)
    return ok("backups", f"the newest backup, {backup.path.name}, is {said} old", **data)


def partial_checks(project: Project, env_names: list[str]) -> list[Check]:
    """Partial files (`.NAME.PID*.partial`) whose writer was killed, in the checkout, config/, postgres_data/
    and backups/<env>/: harmless, removed by the next write beside them, but they take room (and a
    client's password file among them holds a password, mode 0600)."""
    folders = [project.root, project.config_dir, project.data_root] + [project.root / "backups" / n for n in env_names]
    checks = []
    for folder in folders:
        for path in files.orphaned_partials(folder):
            checks.append(warn("leftovers", f"{path}: a partial file a killed command left",
                               f"remove it: `rm {path}` (the next command writing beside it would too)"))
    return checks
