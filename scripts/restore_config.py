"""Restore config/PIPER.md from a dated backup, after backing up the current file.

    python scripts/restore_config.py --date YYYYMMDD[-HHMMSS] [--private]
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
from scripts.backup_config import note_ignored_env, print_result  # noqa: E402
from services import config_backups  # noqa: E402
from services.project import current_project  # noqa: E402


def run(args: argparse.Namespace) -> int:
    project = current_project()
    policy, origin = config_backups.rotation_policy(project)
    result = config_backups.restore_config(project, args.date, policy, private=args.private)
    name = f"config/{result.restored_from.name}"
    if not result.changed:
        print(f"config/PIPER.md already has the content of {name}; nothing changed")
        note_ignored_env(args)
        return 0
    if result.backup_of_current is not None:
        print_result(result.backup_of_current, project, policy, origin)
    print(f"restored config/PIPER.md from {name}")
    note_ignored_env(args)
    return 0


COMMAND = _commands.RESTORE_CONFIG


def main(argv: list[str] | None = None) -> int:
    """Restore the backup of --date; return the exit code."""
    return COMMAND.main(argv)


if __name__ == "__main__":
    _cli.run_command(main)
