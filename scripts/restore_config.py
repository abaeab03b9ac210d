"""Restore config/PIPER.md from a dated backup, after backing up the current file.

    python scripts/restore_config.py --date YYYYMMDD[-HHMMSS] [--private] [--env NAME]
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a command
    gc.disable()  # start-up only makes objects that live to the end; _cli.run_command turns it back on
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import _cli, backup_config  # noqa: E402
from services import config_backups  # noqa: E402
from services.project import current_project  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Restore the backup of --date; return the exit code."""
    cli = _cli.parser("Restore config/PIPER.md from config/PIPER.md.backup-DATE (the current file is backed up first).")
    cli.add_argument("--date", required=True, help="YYYYMMDD (that day's newest backup) or YYYYMMDD-HHMMSS; see backup-config --list")
    cli.add_argument("--private", action="store_true",
                     help=f"keep the backup of the current file in {config_backups.PRIVATE_DIR}/ (needed when the audit flags it)")
    return _cli.run(cli, argv, _restore)


def _restore(args: argparse.Namespace) -> int:
    project = current_project()
    policy, origin = backup_config.rotation_policy(args.env, project)
    result = config_backups.restore_config(project, args.date, policy, private=args.private)
    name = f"config/{result.restored_from.name}"
    if not result.changed:
        print(f"config/PIPER.md already has the content of {name}; nothing changed")
        return 0
    if result.backup_of_current is not None:
        backup_config.print_result(result.backup_of_current, project, policy, origin)
    print(f"restored config/PIPER.md from {name}")
    return 0


if __name__ == "__main__":
    _cli.run_command(main)
