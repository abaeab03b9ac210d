"""piper-ops library: plain typed functions behind tasks.py and scripts/ (ADR-040).

Nothing here prints, prompts or exits: functions return frozen results and raise the domain's
errors (services/errors.py), which the command layer (scripts/_cli.py) turns into one line and an
exit code. Layers point down only: scripts and tasks -> services -> services/database.

- profiles, project, envfile, identifiers: what the project and its environments are
- credentials: a profile and `.env` -> how to connect (a services.database.connection.Target)
- postgres/: the local PostgreSQL server, the only code that runs its binaries
- database/: connections from explicit settings, models, roles, stamp, schema, sessions, events
- environments/: setup, its steps, provisioning, lifecycle (start, stop, backup, restore,
  teardown), status
- users/: accounts, personal data, exports, imports, invitations, and their documents
- user_context_service: a user's context (PIPER.md merged with their preferences)
- isolation: the proof that users and environments are kept apart
- audit/: the personal-data audit of shared files
- config_backups, db_backups, rotation, migrations, files, gitinfo: backups and plumbing
"""
