"""piper-ops tasks: one local PostgreSQL database per environment (ADR-040).

Every task is a command declared once in scripts/_commands.py (scripts/_cli.py explains how): the
ADR's scripts and their tasks are two doors onto one declaration. Loading this file imports the
declarations only, no database driver and no service, so `invoke --list` stays fast.
"""

from __future__ import annotations

from invoke import Collection

from scripts import _cli, _commands

_cli.adopt_invoke_program()

ns = Collection()
for _command in _commands.ALL:
    ns.add_task(_cli.invoke_task(_command))
