"""kill -9 in the middle of write paths: afterwards everything is either done or not done, and the
next command recovers without help."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil
import pytest

from services import credentials, envfile
from services.database import connection
from services.postgres import servers
from services.profiles import load_profile
from services.project import Project
from tests.support.cli import INVOKE, cli_env, run_cli
from tests.support.projects import REPO


def _kill_tree(process: subprocess.Popen, after: float) -> None:
    """SIGKILL the command (not the server it may have started) after `after` seconds."""
    time.sleep(after)
    try:
        psutil.Process(process.pid).send_signal(signal.SIGKILL)
    except psutil.NoSuchProcess:
        pass
    process.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.15, 0.5, 0.9, 1.3])
def test_setup_killed_at_any_moment_is_finished_by_the_next_setup(project: Project, after: float) -> None:
    run = subprocess.Popen([*INVOKE, "setup", "--env", "tester"], cwd=REPO, env=cli_env(project),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_tree(run, after)
    again = run_cli([*INVOKE, "setup", "--env", "tester"], project)
    assert again.returncode == 0, again.stderr
    profile = load_profile("tester", project)
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        assert conn.execute("SELECT value FROM piper_metadata").fetchall() == [("tester",)]
        assert conn.execute("SELECT username FROM alpha_users").fetchall() == [("tester123",)]
    # No half-made data directory is left beside the real one.
    home = servers.locate(profile, project).data_dir.parent
    assert not list(home.glob(".tester.initdb-*"))
    assert envfile.read(project.env_file)["PIPER_ENV"] == "tester"


@pytest.mark.slow
def test_an_import_killed_midway_leaves_all_or_nothing(alpha_env, tester, tmp_path) -> None:
    from psycopg.types.json import Jsonb

    from scripts import create_test_alpha_user

    a_profile, a_project = alpha_env
    t_profile, t_project = tester
    big = {f"k{i}": {"text": "ü✓" * 300 + str(i), "n": list(range(30))} for i in range(9000)}
    assert create_test_alpha_user.main(["--username", "fake.crash", "--env", "alpha"]) == 0
    with connection.connect(credentials.target(a_profile, a_project, "owner")) as conn:
        conn.execute("UPDATE alpha_users SET preferences = %s WHERE username = 'fake.crash'", (Jsonb(big),))
        conn.commit()
    document = tmp_path / "crash.json"
    export = run_cli([sys.executable, "scripts/export_user_data.py", "--username", "fake.crash", "--output",
                      str(document), "--env", "alpha"], a_project)
    assert export.returncode == 0, export.stderr
    for after in (0.3, 0.45, 0.6, 0.75, 0.9, 1.2):
        with connection.connect(credentials.target(t_profile, t_project, "owner")) as conn:
            conn.execute("DELETE FROM alpha_users WHERE username = 'fake.crash'")
            conn.commit()
            # Only this attempt's record counts: an earlier attempt may have finished a moment ago.
            started = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        run = subprocess.Popen([sys.executable, "scripts/import_user_data.py", "--username", "fake.crash", "--data",
                                str(document), "--yes", "--env", "tester"], cwd=REPO, env=cli_env(t_project),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _kill_tree(run, after)
        with connection.connect(credentials.target(t_profile, t_project, "owner")) as conn:
            row = conn.execute("SELECT preferences FROM alpha_users WHERE username = 'fake.crash'").fetchone()
            events = conn.execute("SELECT count(*) FROM user_data_events WHERE username = 'fake.crash' "
                                  "AND event = 'import' AND occurred_at >= %s", (started,)).fetchone()[0]
        assert row is None or row[0] == big, "a partial import is visible"
        assert (row is not None) == (events >= 1), "an import and its record must land together"
    # Whatever the timing, the next import finishes the job.
    final = run_cli([sys.executable, "scripts/import_user_data.py", "--username", "fake.crash", "--data",
                     str(document), "--yes", "--env", "tester"], t_project)
    assert final.returncode == 0, final.stderr
    with connection.connect(credentials.target(t_profile, t_project, "owner")) as conn:
        assert conn.execute("SELECT preferences FROM alpha_users WHERE username = 'fake.crash'").fetchone()[0] == big
