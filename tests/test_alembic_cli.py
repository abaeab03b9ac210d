"""Alembic's own command line (alembic.ini + migrations/env.py) as a developer of Piper runs it.

Every test runs the real `alembic` console script of the virtual environment as a subprocess, in a
test project (tests/support/projects.make_project puts an alembic.ini at its root), on a real
PostgreSQL server set up by the project's own code.
"""

from __future__ import annotations

import ast
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from services import credentials, db_backups, migrations
from services.database import connection, roles, schema, stamp
from services.environments import lifecycle, locking
from services.profiles import Profile
from services.project import Project
from tests.support.cli import INVOKE, cli_env, run_cli
from tests.support.projects import REPO

ALEMBIC = str(Path(sys.executable).parent / "alembic")
PROFILES = "alpha, dev, production, tester"


def alembic(project: Project, *args: str, cwd: Path | None = None, root: bool = False,
            **extra: str) -> subprocess.CompletedProcess[str]:
    """Run `alembic ARGS` in the project's root (or cwd), finding the project as a user's shell does:
    from alembic.ini's directory, not $PIPER_ROOT (unless root=True)."""
    env = cli_env(project, **extra)
    if not root:
        del env["PIPER_ROOT"]
    return subprocess.run([ALEMBIC, *args], cwd=cwd or project.root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    """Return the one `error: ...` line of stderr; there is exactly one and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def owner_sql(profile: Profile, project: Project, statement: str) -> None:
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        conn.execute(statement)


def revision_of(profile: Profile, project: Project) -> str | None:
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        return schema.current_revision(conn)


def test_current_and_history_as_alembic_users_know_them(fresh_tester) -> None:
    profile, project = fresh_tester
    head = migrations.head_revision(project)
    current = alembic(project, "current")
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip() == f"{head} (head)"
    assert "environment 'tester': postgresql://piper_owner:***@" in current.stderr
    assert credentials.target(profile, project, "owner").password not in current.stdout + current.stderr
    history = alembic(project, "history")
    assert history.returncode == 0, history.stderr
    listed = [line.split(",")[0] for line in history.stdout.splitlines()]
    assert listed[0] == f"0002 -> {head} (head)" and listed[-1] == "<base> -> 0001"


def test_the_environment_comes_from_x_env_then_piper_env(fresh_tester) -> None:
    _, project = fresh_tester
    envfile_text = project.env_file.read_text()
    project.env_file.write_text("\n".join(line for line in envfile_text.splitlines()
                                          if not line.startswith("PIPER_ENV=")) + "\n")
    assert alembic(project, "-x", "env=tester", "current").returncode == 0
    assert alembic(project, "current", PIPER_ENV="tester").returncode == 0
    # -x env wins over $PIPER_ENV, as --env does everywhere else.
    chosen = alembic(project, "-x", "env=tester", "current", PIPER_ENV="alpha")
    assert chosen.returncode == 0 and "environment 'tester'" in chosen.stderr, chosen.stderr


def test_a_url_in_alembic_ini_is_never_used(fresh_tester) -> None:
    _, project = fresh_tester
    ini = project.root / "alembic.ini"
    ini.write_text(ini.read_text().replace("[alembic]\n", "[alembic]\nsqlalchemy.url = postgresql://nobody@192.0.2.1/x\n"))
    result = alembic(project, "current")
    assert result.returncode == 0 and "(head)" in result.stdout, result.stderr
    assert "sqlalchemy.url in " in result.stderr and "is ignored" in result.stderr


def test_from_elsewhere_with_c_and_with_the_checkouts_own_ini(fresh_tester, tmp_path: Path) -> None:
    _, project = fresh_tester
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    by_path = alembic(project, "-c", str(project.root / "alembic.ini"), "current", cwd=elsewhere)
    assert by_path.returncode == 0 and "(head)" in by_path.stdout, by_path.stderr
    # The ini exactly as shipped, in the checkout, for a project kept apart from the code ($PIPER_ROOT).
    shipped = alembic(project, "current", cwd=REPO, root=True)
    assert shipped.returncode == 0 and "(head)" in shipped.stdout, shipped.stderr


def test_downgrade_and_upgrade_by_hand_keep_the_application_roles_limits(fresh_tester) -> None:
    profile, project = fresh_tester
    head = migrations.head_revision(project)
    down = alembic(project, "downgrade", "-1")
    assert down.returncode == 0, down.stderr
    assert revision_of(profile, project) == "0002"
    # A destructive command backs up first: the archive of the database as it was, at head.
    [taken] = db_backups.list_backups(profile, project)
    assert taken.kind == "pre-downgrade" and f"database backed up to {taken.path} (pre-downgrade;" in down.stderr
    # Back to before the invitations and the record of data moves, then up again: the tables are
    # new, and the owner's default privileges alone would open them to the application role.
    assert alembic(project, "downgrade", "0001").returncode == 0
    up = alembic(project, "upgrade", "head")
    assert up.returncode == 0, up.stderr
    assert "Running upgrade 0001 -> 0002" in up.stderr and "gave piper_app back its privileges" in up.stderr
    assert revision_of(profile, project) == head
    app = credentials.target(profile, project, "app")
    with connection.connect(app) as conn:
        conn.execute("SELECT count(*) FROM alpha_users")  # its own tables: allowed
        for statement in ("SELECT * FROM user_invitations", "SELECT * FROM user_data_events",
                          "UPDATE piper_metadata SET value = 'alpha'"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        assert roles.application_limits_hold(conn, "piper_app")
    again = alembic(project, "upgrade", "head")
    assert again.returncode == 0 and "Running upgrade" not in again.stderr


def test_check_is_clean_and_then_reports_drift(fresh_tester) -> None:
    profile, project = fresh_tester
    clean = alembic(project, "check")
    assert clean.returncode == 0, clean.stderr
    assert "No new upgrade operations detected." in clean.stdout
    owner_sql(profile, project, "ALTER TABLE alpha_users ADD COLUMN nickname text")
    drift = alembic(project, "check")
    assert drift.returncode != 0
    assert "New upgrade operations detected" in drift.stderr and "nickname" in drift.stderr


def _migrations_copy(project: Project, tmp_path: Path) -> Path:
    """Point the project's alembic.ini at a copy of migrations/, so that revisions land there."""
    copy = tmp_path / "migrations"
    shutil.copytree(REPO / "migrations", copy, ignore=shutil.ignore_patterns("__pycache__"))
    ini = project.root / "alembic.ini"
    ini.write_text(ini.read_text().replace(str(REPO / "migrations"), str(copy)))
    return copy


def test_autogenerate_writes_a_clean_numbered_revision(fresh_tester, tmp_path: Path) -> None:
    profile, project = fresh_tester
    ours = sorted(p.name for p in (REPO / "migrations" / "versions").glob("*.py"))
    copy = _migrations_copy(project, tmp_path)
    made = alembic(project, "revision", "--autogenerate", "-m", "nothing yet")
    assert made.returncode == 0, made.stderr
    revision = copy / "versions" / "0004_nothing_yet.py"
    assert revision.is_file(), made.stdout
    text = revision.read_text()
    assert "revision: str = '0004'" in text and "down_revision: str | None = '0003'" in text
    functions = {node.name: node for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)}
    for name in ("upgrade", "downgrade"):  # nothing to do: the models and the database agree
        assert [type(statement) for statement in functions[name].body] == [ast.Pass], text
    revision.unlink()
    # With a column made by hand, autogenerate sees it, and --rev-id chooses the number.
    owner_sql(profile, project, "ALTER TABLE alpha_users ADD COLUMN nickname text")
    chosen = alembic(project, "revision", "--autogenerate", "-m", "drop the nickname", "--rev-id", "0042")
    assert chosen.returncode == 0, chosen.stderr
    drop = copy / "versions" / "0042_drop_the_nickname.py"
    assert "op.drop_column('alpha_users', 'nickname')" in drop.read_text()
    # The developer's loop: upgrade, check, and the way back.
    assert alembic(project, "upgrade", "head").returncode == 0
    assert revision_of(profile, project) == "0042" and alembic(project, "check").returncode == 0
    assert alembic(project, "downgrade", "-1").returncode == 0
    assert alembic(project, "check").returncode != 0  # the nickname column is back, the models lack it
    drop.unlink()
    assert sorted(p.name for p in (REPO / "migrations" / "versions").glob("*.py")) == ours


def test_history_and_offline_sql_need_no_environment(project: Project) -> None:
    history = alembic(project, "history")
    assert history.returncode == 0 and "<base> -> 0001" in history.stdout, history.stderr
    result = alembic(project, "upgrade", "head", "--sql")
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE piper_metadata" in result.stdout and "COMMIT;" in result.stdout


def test_no_environment_selected_is_one_line_listing_the_profiles(project: Project) -> None:
    result = alembic(project, "current")
    assert result.returncode == 2
    line = error_line(result)
    assert line.startswith("error: no environment selected; pass -x env=NAME")
    assert line.endswith(f"(profiles: {PROFILES})")


@pytest.mark.parametrize(("args", "message"), [
    (["-x", "env=nosuch"], f"error: unknown environment 'nosuch'; known environments: {PROFILES}"),
    (["-x", "env=alpha"], "holds no PIPER_ALPHA_OWNER_PASSWORD for environment 'alpha'; "
                          "run `invoke setup --env alpha`"),
    (["-x", "env"], "error: -x env needs a name; use -x env=NAME"),
    (["-x", "envv=tester"], "error: unknown -x argument 'envv'; the only one is -x env=NAME"),
])
def test_a_bad_selection_is_refused_in_one_line(fresh_tester, args: list[str], message: str) -> None:
    _, project = fresh_tester
    result = alembic(project, *args, "upgrade", "head")
    assert result.returncode == 2
    assert message in error_line(result)


def test_a_database_stamped_for_another_environment_is_refused(fresh_tester) -> None:
    profile, project = fresh_tester
    owner_sql(profile, project, "UPDATE piper_metadata SET value = 'alpha' WHERE key = 'environment'")
    for args in (["downgrade", "-1"], ["current"], ["check"]):
        result = alembic(project, *args)
        assert result.returncode == 1
        assert "is stamped for environment 'alpha', not 'tester'; use -x env=alpha" in error_line(result)
    assert revision_of(profile, project) == migrations.head_revision(project)


def test_a_database_never_stamped_is_sent_to_invoke_setup(fresh_tester) -> None:
    profile, project = fresh_tester
    assert alembic(project, "downgrade", "-1").returncode == 0
    owner_sql(profile, project, f"DELETE FROM piper_metadata WHERE key = '{stamp.STAMP_KEY}'")
    refused = alembic(project, "upgrade", "head")
    assert refused.returncode == 1
    assert "carries no environment stamp; run `invoke setup --env tester` first" in error_line(refused)
    assert revision_of(profile, project) == "0002"
    setup = run_cli([*INVOKE, "setup", "--env", "tester"], project)
    assert setup.returncode == 0, setup.stderr
    assert alembic(project, "current").stdout.strip() == f"{migrations.head_revision(project)} (head)"


def test_a_server_that_is_down_is_one_line_with_its_fix(fresh_tester) -> None:
    profile, project = fresh_tester
    lifecycle.stop_environment(profile, project)
    result = alembic(project, "upgrade", "head")
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith("error: cannot connect to environment 'tester'")
    assert line.endswith("run `invoke status` and `invoke db-start --env tester`")


def waiting_upgrade(project: Project) -> subprocess.Popen[str]:
    """Start `alembic upgrade head` and return once it has selected its environment (the lock is next)."""
    env = cli_env(project)
    del env["PIPER_ROOT"]
    upgrade = subprocess.Popen([ALEMBIC, "upgrade", "head"], cwd=project.root, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert upgrade.stderr is not None
    first = upgrade.stderr.readline()
    assert "environment 'tester'" in first, first
    return upgrade


def test_a_hand_upgrade_waits_for_the_environments_lock_and_reading_does_not(fresh_tester) -> None:
    profile, project = fresh_tester
    assert alembic(project, "downgrade", "-1").returncode == 0
    with locking.environment_lock(profile, project):
        reading = alembic(project, "current")
        assert reading.returncode == 0 and reading.stdout.strip() == "0002"
        upgrade = waiting_upgrade(project)
        time.sleep(1)
        assert upgrade.poll() is None and revision_of(profile, project) == "0002"
    _, stderr = upgrade.communicate(timeout=60)
    assert upgrade.returncode == 0, stderr
    assert revision_of(profile, project) == migrations.head_revision(project)


def test_piper_ops_own_path_selects_no_profile(fresh_tester, monkeypatch: pytest.MonkeyPatch) -> None:
    # services/database/schema.py hands env.py a connection: no selection, whatever the shell says.
    profile, project = fresh_tester
    monkeypatch.setenv("PIPER_ENV", "nosuch")
    with connection.engine(credentials.target(profile, project, "owner")) as eng, eng.connect() as conn:
        schema.check(conn, project.migrations_dir)  # no "unknown environment 'nosuch'": nothing was selected
        assert schema.current_revision(conn.connection.driver_connection) == migrations.head_revision(project)


def test_hosted_production_through_its_url(production_env) -> None:
    _, project = production_env
    urls = {key: value for key, value in os.environ.items() if key.startswith("PIPER_PRODUCTION_")}
    result = alembic(project, "-x", "env=production", "current", **urls)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{migrations.head_revision(project)} (head)"
    assert "environment 'production': postgresql://piper_owner:***@localhost:" in result.stderr
    assert all(url not in result.stderr for url in urls.values())


def test_a_protected_environment_is_never_downgraded_by_hand(production_env) -> None:
    _, project = production_env
    urls = {key: value for key, value in os.environ.items() if key.startswith("PIPER_PRODUCTION_")}
    result = alembic(project, "-x", "env=production", "downgrade", "-1", **urls)
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith("error: environment 'production' is protected") and "roll forward instead" in line
    current = alembic(project, "-x", "env=production", "current", **urls)
    assert current.stdout.strip() == f"{migrations.head_revision(project)} (head)"


def test_ctrl_c_while_waiting_is_one_line_and_changes_nothing(fresh_tester) -> None:
    profile, project = fresh_tester
    assert alembic(project, "downgrade", "-1").returncode == 0
    with locking.environment_lock(profile, project):
        upgrade = waiting_upgrade(project)
        upgrade.send_signal(signal.SIGINT)
        _, stderr = upgrade.communicate(timeout=60)
    assert upgrade.returncode == 1
    assert "Traceback" not in stderr and stderr.splitlines()[-1] == "error: interrupted; nothing was committed"
    assert revision_of(profile, project) == "0002"
