"""Every command piper-ops has, declared once: its name, summary, flags, and the function that runs it.

`invoke --list` shows these; `invoke NAME` and, where a command has one, `python scripts/<script>.py`
are its two doors (scripts/_cli.py). Each `run` names the function that does the work; it is
imported only when the command runs, so listing and parsing import nothing else of piper-ops.
"""

from __future__ import annotations

from pathlib import Path

from scripts._cli import Command, Flag, positive_int

_YES = Flag("yes", "do not ask for confirmation", switch=True)
#: backup-config's and restore-config's --env: PIPER.md is shared, and so is its rotation (config/backup-policy.yaml).
_POLICY_ENV_HELP = ("accepted for symmetry with every command and ignored: PIPER.md is shared, its rotation policy is "
                    "config/backup-policy.yaml's")

# --- an environment as a whole (invoke only) -------------------------------------------------

SETUP = Command(
    name="setup", run="scripts._environments:run_setup",
    summary="Provision an environment's PostgreSQL, migrate, stamp, create its default user, write .env.",
    flags=(
        Flag("allow_branch_mismatch", "go on when the checkout's branch differs from a profile that refuses it",
             switch=True),
        Flag("data_file", "JSON file of personal data for profiles whose setup steps take one", metavar="FILE"),
    ),
    env_help="environment to set up: dev, alpha, tester or production",
)

STATUS = Command(
    name="status", run="scripts._environments:run_status", env_help=None,
    summary="Show every environment at a glance: server, schema revision vs head, users, branch.",
    flags=(Flag("json", "print machine-readable JSON instead of a table", switch=True),),
)

TEARDOWN = Command(
    name="teardown", run="scripts._environments:run_teardown", flags=(_YES,),
    summary="Back up, then stop an environment's server and delete its database (asks first; refuses protected).",
)

DB_START = Command(name="db-start", run="scripts._environments:run_db_start",
                   summary="Start an environment's PostgreSQL server (recovers after a crash).")

DB_STOP = Command(name="db-stop", run="scripts._environments:run_db_stop",
                  summary="Stop an environment's PostgreSQL server.")

DB_BACKUP = Command(
    name="db-backup", run="scripts._environments:run_db_backup",
    summary="Back up an environment's database (verified pg_dump in backups/<env>/) and rotate old backups.",
    flags=(
        Flag("list", "list the environment's backups, numbered, with time, size, kind, verification and schema "
                     "revision instead", switch=True, exclusive="what"),
        Flag("verify_restore", "restore the newest backup into a scratch database on the same server, compare rows "
                               "per table and the stamp, then drop it (takes no new backup)", switch=True,
             exclusive="what"),
        Flag("format", "custom (a pg_dump archive db-restore reads) or plain (SQL for other tools) (default: custom)",
             choices=("custom", "plain"), default="custom"),
    ),
)

DB_RESTORE = Command(
    name="db-restore", run="scripts._environments:run_db_restore",
    summary="Restore a database backup over an environment, after backing up what is there (asks first).",
    flags=(
        Flag("latest", "restore the newest backup that is not a safety copy (the default)", switch=True,
             exclusive="which"),
        Flag("pick", "restore backup number N of `invoke db-backup --list`", parse=positive_int, metavar="N",
             exclusive="which"),
        Flag("file", "the archive to restore", metavar="FILE", exclusive="which"),
        Flag("from_env", "accept an archive of this other environment (it is stamped for this one once restored)",
             metavar="ENV"),
        Flag("list", "list the backups with the numbers --pick takes, restoring nothing", switch=True,
             exclusive="which"),
        _YES,
    ),
)

# --- users and their data (invoke, and the ADR's scripts) ------------------------------------

CREATE_USER = Command(
    name="create-user", script="create_test_alpha_user", run="scripts.create_test_alpha_user:run",
    summary="Create a user in an environment (same as scripts/create_test_alpha_user.py).",
    flags=(
        Flag("username", "the user's login name (lower-case)", required=True),
        Flag("email", "the user's email (default: USERNAME@example.invalid)"),
        Flag("display_name", "the name shown to people"),
    ),
)

MIGRATE_PERSONAL_DATA = Command(
    name="migrate-personal-data", script="migrate_personal_data", run="scripts.migrate_personal_data:run",
    summary="Deep-merge a personal-data file into a user's preferences, in one transaction "
            "(same as scripts/migrate_personal_data.py).",
    flags=(
        Flag("username", "the user whose data this is", required=True),
        Flag("data_file", "personal-data JSON file (default: the profile's personal_data.data_file)", parse=Path,
             metavar="FILE"),
        Flag("skip_migration", "only verify that the user exists and print its id", switch=True),
        Flag("dry_run", "show what would change; write nothing", switch=True),
        Flag("yes", "do not ask before migrating a data file that names no user (a bare object of preferences) "
                    "into --username", switch=True),
    ),
)

EXPORT_USER = Command(
    name="export-user", script="export_user_data", run="scripts.export_user_data:run",
    summary="Export one user's profile and preferences as checksummed JSON (same as scripts/export_user_data.py).",
    flags=(
        Flag("username", "the user to export", required=True),
        Flag("keys", "comma-separated top-level preference keys to export (default: all)"),
        Flag("output", "write to this file (mode 0600) instead of standard output; exports/U.json is the "
                       "git-ignored export folder (0700, made on first use)", parse=Path, metavar="FILE"),
    ),
)

IMPORT_USER = Command(
    name="import-user", script="import_user_data", run="scripts.import_user_data:run",
    summary="Import a user's exported data into the selected environment, with consent "
            "(same as scripts/import_user_data.py).",
    flags=(
        Flag("username", "the user to import (must match the document)", required=True),
        Flag("email", "the user's email in this environment (default: the document's)"),
        Flag("data", "the export document, or - for standard input", required=True, metavar="FILE"),
        Flag("merge", "on conflict, deep-merge the file into the existing data", switch=True, exclusive="mode"),
        Flag("replace", "on conflict, replace the existing data with the file's", switch=True, exclusive="mode"),
        Flag("yes", "do not ask for confirmation", switch=True),
        Flag("dry_run", "only show what would change", switch=True),
    ),
)

DELETE_USER = Command(
    name="delete-user", script="delete_user", run="scripts.delete_user:run",
    summary="Delete a user and all their data, exported first to private/deleted-users/ "
            "(same as scripts/delete_user.py).",
    flags=(
        Flag("username", "the user to delete", required=True),
        Flag("yes", "do not ask for confirmation", switch=True),
    ),
)

ACCEPT_INVITATION = Command(
    name="accept-invitation", script="accept_invitation", run="scripts.accept_invitation:run",
    summary="Set your production password with an invitation token (same as scripts/accept_invitation.py).",
    flags=(
        Flag("token", "the token from the invitation email (default: asked, or read from standard input); "
                           "giving it here makes it visible to other processes"),
        Flag("password_stdin", "read the password from standard input (first line)", switch=True),
    ),
)

VERIFY_ISOLATION = Command(
    name="verify-isolation", script="test_user_data_isolation", run="scripts.test_user_data_isolation:run",
    summary="Check that users and environments are isolated: exit 0 only when all checks hold.",
)

# --- config/PIPER.md: the audit and its backups ----------------------------------------------

AUDIT_PIPER_MD = Command(
    name="audit-piper-md", script="audit_piper_md", run="scripts.audit_piper_md:run",
    summary="Audit config/PIPER.md and its backups for personal data: exit 0 clean, 1 found, 2 could not run.",
    flags=(
        Flag("paths", "files to scan instead of PIPER.md and its backups", positional=True, metavar="PATH"),
        Flag("history", "scan every past version of PIPER.md and its backups in git history (with --all: every file)",
             switch=True, exclusive="scope"),
        Flag("staged", "scan the staged content of PIPER.md and its backups, as the pre-commit hook does "
                            "(with --all: every staged file)", switch=True, exclusive="scope"),
        Flag("all", "scan every git-tracked text file (except the profiles defining the rules)", switch=True),
        Flag("format", "output format (default: text)", choices=("text", "json", "sarif"), default="text"),
        Flag("workers", "processes to scan with (default: one per available core; small audits use one)",
             parse=positive_int, metavar="N"),
        Flag("allowlist", "accepted findings, by rule and sha256 (default: config/audit-allowlist.yaml in the project)",
             metavar="FILE"),
        Flag("hook", "run as the pre-commit hook: audit the files given (none: clean) in the git repository of the "
                     "current directory, with its profiles if it has environments/, its .piper-audit.yaml and --terms",
             switch=True, exclusive="scope"),
        Flag("rules", "a rules file of terms to look for, as in a profile's audit.terms (default: .piper-audit.yaml "
                      "in the project, if there)", metavar="FILE"),
        Flag("terms", "more terms to look for, comma-separated, whole words in any case", metavar="TERM[,TERM...]"),
    ),
    env_help="accepted for symmetry with every command; the audit's rules come from every profile",
)

BACKUP_CONFIG = Command(
    name="backup-config", script="backup_config", run="scripts.backup_config:run",
    summary="Back up config/PIPER.md as PIPER.md.backup-YYYYMMDD and rotate old backups.",
    flags=(
        Flag("dry_run", "show what would be written and removed; change nothing", switch=True),
        Flag("list", "list the backups with their dates and sizes", switch=True),
        Flag("private", "write the backup to private/config-backups/ (git-ignored), e.g. when the audit "
                             "flags it", switch=True),
    ),
    env_help=_POLICY_ENV_HELP,
)

RESTORE_CONFIG = Command(
    name="restore-config", script="restore_config", run="scripts.restore_config:run",
    summary="Restore config/PIPER.md from a dated backup, backing up the current file first.",
    flags=(
        Flag("date", "YYYYMMDD (that day's newest backup) or YYYYMMDD-HHMMSS; see backup-config --list",
             required=True),
        Flag("private", "keep the backup of the current file in private/config-backups/ (needed when the "
                             "audit flags it)", switch=True),
    ),
    env_help=_POLICY_ENV_HELP,
)


# --- connecting to an environment's database ----------------------------------------------------

_ROLE = Flag("role", "connect as the application role (app, subject to row-level security) or the owner "
                     "(owner, for admin work) (default: app)", choices=("app", "owner"), default="app")

ENV = Command(
    name="env", run="scripts._connect:run_env",
    summary="Print an environment's connection variables (DATABASE_URL, PG*); the password only with --show-password.",
    flags=(
        _ROLE,
        Flag("format", "dotenv (KEY=value), shell (export lines for eval) or json (default: dotenv)",
             choices=("dotenv", "shell", "json"), default="dotenv"),
        Flag("show_password", "print the password too (in DATABASE_URL and PGPASSWORD)", switch=True),
    ),
)

PSQL = Command(
    name="psql", run="scripts._connect:run_psql",
    summary="Open the server's own psql on an environment's database (password through a private file).",
    flags=(
        _ROLE,
        Flag("command", "run this one SQL statement or meta-command and exit, like psql -c (anything after -- "
                        "goes to psql as it is: invoke psql -- -At -c 'select 1')", metavar="SQL"),
    ),
)


# --- a new tester's first hour ------------------------------------------------------------------

ONBOARD = Command(
    name="onboard", run="scripts._onboard:run_onboard",
    summary="The tester wizard: ask a username, email and data file, set up, create the user, import, "
            "check isolation.",
    flags=(
        Flag("username", "your login name in the environment (asked, default: the profile's default user)"),
        Flag("email", "your email in the environment (asked, default: derived from the username or the export)"),
        Flag("data", "a personal-data file or an export (`invoke export-user`) to import (asked)", metavar="FILE",
             exclusive="data"),
        Flag("no_import", "import no data (do not ask for a data file)", switch=True, exclusive="data"),
        Flag("merge", "if you already exist with other data, deep-merge the export into it", switch=True,
             exclusive="mode"),
        Flag("replace", "if you already exist with other data, replace it with the export's", switch=True,
             exclusive="mode"),
        Flag("allow_branch_mismatch", "go on when the checkout's branch differs from a profile that refuses it",
             switch=True),
        Flag("yes", "ask nothing: take the default of every question no flag answers, and consent", switch=True),
    ),
    env_help="environment to onboard into (default: tester; not $PIPER_ENV)",
)

# --- what is wrong with this machine (issue 11 §3) ---------------------------------------------

DOCTOR = Command(
    name="doctor", run="scripts._doctor:run_doctor",
    summary="Check the machine, this checkout and an environment; say how to fix what is wrong (exit 1 if any fails).",
    flags=(
        Flag("report", "also write a redacted report (Markdown with a JSON block) to paste into a bug", metavar="FILE"),
        Flag("json", "print the checks as JSON (format piper-doctor-report, not redacted) instead of text",
             switch=True),
    ),
    env_help="environment to check in full (default: $PIPER_ENV, then .env; with none, the machine and each "
             "environment's basics)",
)


# --- the project's own figures ------------------------------------------------------------------

BENCH = Command(
    name="bench", run="scripts._bench:run_bench", env_help=None,
    summary="Measure every figure of docs/BENCHMARKS.md against its floor and rewrite its latest-run tables.",
    flags=(
        Flag("only", "comma-separated benchmarks to run, by the names of docs/BENCHMARKS.md's sections "
             "(default: all; a wrong name lists them)"),
        Flag("runs", "runs per measurement, for the benchmarks that take it (default: theirs)", parse=positive_int,
             metavar="N"),
        Flag("dry_run", "print the tables; leave docs/BENCHMARKS.md as it is", switch=True),
    ),
)

DOCS = Command(
    name="docs", run="scripts._docs:run_docs", env_help=None,
    summary="Regenerate what docs/ derives from the profiles (docs/ENVIRONMENTS.md), without local overrides.",
    flags=(Flag("check", "change nothing; exit 1 when a generated file is out of date with the profiles",
                switch=True),),
)


#: In the order `invoke --list` would not keep anyway (it sorts): as they are declared here.
ALL = (SETUP, STATUS, TEARDOWN, DB_START, DB_STOP, DB_BACKUP, DB_RESTORE, CREATE_USER, MIGRATE_PERSONAL_DATA,
       EXPORT_USER, IMPORT_USER, DELETE_USER, ACCEPT_INVITATION, VERIFY_ISOLATION, AUDIT_PIPER_MD, BACKUP_CONFIG,
       RESTORE_CONFIG, ENV, PSQL, ONBOARD, DOCTOR, BENCH, DOCS)
