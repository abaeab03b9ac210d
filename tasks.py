"""piper-ops tasks: one local PostgreSQL database per environment (ADR-040).

Every task is a command declared once in scripts/ (scripts/_cli.py explains how): the ADR's
scripts and their tasks are two doors onto one declaration, and the environment commands
(setup, status, teardown, db-*) are declared in scripts/_environments.py. Nothing here imports a
database driver at load time, so `invoke --list` stays fast.
"""

from __future__ import annotations

from invoke import Collection

from scripts import (
    _cli,
    _environments,
    accept_invitation,
    audit_piper_md,
    backup_config,
    create_test_alpha_user,
    delete_user,
    export_user_data,
    import_user_data,
    migrate_personal_data,
    restore_config,
    test_user_data_isolation,
)

_cli.adopt_invoke_program()

ns = Collection()
for _command in (*_environments.COMMANDS, create_test_alpha_user.COMMAND, migrate_personal_data.COMMAND,
                 export_user_data.COMMAND, import_user_data.COMMAND, delete_user.COMMAND, accept_invitation.COMMAND,
                 test_user_data_isolation.COMMAND, audit_piper_md.COMMAND, backup_config.COMMAND,
                 restore_config.COMMAND):
    ns.add_task(_cli.invoke_task(_command))
