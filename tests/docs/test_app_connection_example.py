"""docs/examples/app_connection.py against a real environment: the safe form isolates requests, a session SET leaks."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

from sqlalchemy import text

from services import envfile
from services.project import Project
from tests.support.projects import REPO, run_script_step

EXAMPLE = REPO / "docs" / "examples" / "app_connection.py"
SEES = text("SELECT current_setting('piper.acting_user', true), pg_backend_pid(), "
            "(SELECT count(*) FROM alpha_users)")


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("app_connection", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _url(project: Project) -> str:
    return envfile.read(project.env_file)["DATABASE_URL"]


def test_the_example_runs_as_written_and_sees_only_the_acting_users_row(fresh_tester) -> None:
    profile, project = fresh_tester
    assert run_script_step("create_test_alpha_user", ["--username", "faketwo", "--env", "tester"]) == 0
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": _url(project)}
    result = subprocess.run([sys.executable, str(EXAMPLE), "tester123"], env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert (result.returncode, result.stdout) == (0, "tester123 tester123@example.invalid\n"), result.stderr
    nobody = subprocess.run([sys.executable, str(EXAMPLE), "no-such-user"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert (nobody.returncode, nobody.stdout) == (0, "")


def test_a_session_set_leaks_to_the_next_checkout_and_the_transaction_local_form_does_not(fresh_tester) -> None:
    profile, project = fresh_tester
    example = _example()
    # One pooled connection, so that the next checkout is the same connection (as under load it often is).
    engine = example.make_engine(_url(project), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:  # the unsafe way: a session-level SET
            conn.execute(text("SET piper.acting_user = 'tester123'"))
            conn.commit()
            first_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as conn:  # the next request, on the same pooled connection
            setting, pid, rows = conn.execute(SEES).one()
        assert pid == first_pid
        assert (setting, rows) == ("tester123", 1)  # the leak: it acts as the previous request's user
    finally:
        engine.dispose()

    engine = example.make_engine(_url(project), pool_size=1, max_overflow=0)
    try:
        with example.acting_as(engine, "tester123") as conn:  # the safe way: for the transaction only
            setting, first_pid, rows = conn.execute(SEES).one()
            assert (setting, rows) == ("tester123", 1)
        with engine.connect() as conn:
            setting, pid, rows = conn.execute(SEES).one()
        assert pid == first_pid
        assert (setting, rows) == ("", 0)  # names no one: row-level security shows nothing
    finally:
        engine.dispose()
