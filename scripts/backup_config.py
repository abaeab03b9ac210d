"""Back up config/PIPER.md as config/PIPER.md.backup-YYYYMMDD, then rotate old backups.

    python scripts/backup_config.py [--dry-run] [--list] [--private]

The rotation policy is the project's, in config/backup-policy.yaml (PIPER.md is shared by every
environment); --env is accepted, as by every command, and changes nothing.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a command
    gc.disable()  # start-up only makes objects that live to the end; _cli.run_command turns it back on
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import _cli, _commands  # noqa: E402
from services import config_backups  # noqa: E402
from services.profiles import Rotation  # noqa: E402
from services.project import Project, current_project  # noqa: E402


def run(args: argparse.Namespace) -> int:
    project = current_project()
    if args.list:
        return _list(project)
    policy, origin = config_backups.rotation_policy(project)
    result = config_backups.backup_config(project, policy, dry_run=args.dry_run, private=args.private)
    print_result(result, project, policy, origin)
    note_ignored_env(args)
    return 0


def note_ignored_env(args: argparse.Namespace) -> None:
    """Say, after the result, that --env no longer chooses PIPER.md's rotation (it did before issue 13)."""
    if getattr(args, "env", None):
        print(f"note: --env {args.env} does not change the rotation of PIPER.md backups: PIPER.md is shared, its "
              f"policy is config/{config_backups.POLICY_FILE}'s")


def print_result(result: config_backups.BackupResult, project: Project, policy: Rotation, origin: str) -> None:
    """Render a BackupResult: what was (or would be) written and removed (restore-config prints its safety copy so too)."""
    would = "would " if result.dry_run else ""
    if result.created is not None:
        verb = "back up" if result.dry_run else "backed up"
        print(f"{would}{verb} config/PIPER.md to {_rel(result.created.path, project)} ({result.created.size} bytes)")
        if result.findings:
            print(f"note: the audit flags this content ({len(result.findings)} finding(s)); it stays in the git-ignored "
                  f"{config_backups.PRIVATE_DIR}/")
    elif result.identical_to is not None:
        print(f"config/PIPER.md is identical to {_rel(result.identical_to.path, project)}; no new backup")
    print(f"rotation: {policy.describe()} ({origin})")
    gone = result.rotation.drop if result.dry_run else result.removed
    for item in gone:
        path = item.path if hasattr(item, "path") else item
        print(f"  {would}remove {_rel(path, project)}")
    if not gone:
        print(f"  nothing to remove; {len(result.rotation.keep)} backup(s) kept")


def _list(project: Project) -> int:
    backups = config_backups.list_backups(project) + config_backups.list_backups(project, private=True)
    if not backups:
        print("no backups of config/PIPER.md yet; run `invoke backup-config`")
        return 0
    print(f"{'date':<19}  {'size':>9}  backup")
    for backup in sorted(backups, key=lambda b: (b.taken, b.name), reverse=True):
        # A name with only a date says nothing of the time: show the date alone then.
        taken = f"{backup.taken:%Y-%m-%d %H:%M:%S}" if "-" in backup.name.rsplit("backup-", 1)[-1] else f"{backup.taken:%Y-%m-%d}"
        print(f"{taken:<19}  {backup.size:>9}  {_rel(backup.path, project)}"
              + ("  (private, git-ignored)" if backup.private else ""))
    return 0


def _rel(path: Path, project: Project) -> str:
    try:
        return str(path.relative_to(project.root))
    except ValueError:
        return str(path)


COMMAND = _commands.BACKUP_CONFIG


def main(argv: list[str] | None = None) -> int:
    """Take (or list) dated backups of config/PIPER.md; return the exit code."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    _cli.run_command(main)
