"""services/environments/locking.py (and the lock of .env): setups started at once, as real subprocesses."""

from __future__ import annotations

import subprocess
import time

import pytest

from services import credentials, envfile
from services.database import connection
from services.environments import locking
from services.errors import ClusterError
from services.profiles import load_profile
from services.project import Project
from tests.support.cli import INVOKE, cli_env
from tests.support.projects import REPO


def test_a_second_holder_waits_and_gives_up_with_one_line(project: Project) -> None:
    profile = load_profile("tester", project)
    with locking.environment_lock(profile, project):
        started = time.monotonic()
        with pytest.raises(ClusterError, match="another piper-ops command has held environment 'tester' for 0 s; wait"):
            with locking.environment_lock(profile, project, timeout=0.2):
                pass
        assert time.monotonic() - started >= 0.2
        with locking.environment_lock(load_profile("alpha", project), project, timeout=0.2):
            pass  # another environment's lock is another lock
    with locking.environment_lock(profile, project, timeout=0.2):
        pass  # released
    assert oct(project.data_root.stat().st_mode & 0o777) == "0o700"


@pytest.mark.slow
def test_two_setups_at_once_both_succeed_and_create_one_server(project: Project) -> None:
    env = cli_env(project)
    runs = [subprocess.Popen([*INVOKE, "setup", "--env", "alpha"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    created = sum("created a PostgreSQL server" in out for out, _ in outputs)
    assert created == 1
    assert sum("created user alfy" in out for out, _ in outputs) == 1
    profile = load_profile("alpha", project)
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        assert conn.execute("SELECT count(*) FROM alpha_users").fetchone() == (1,)


@pytest.mark.slow
def test_setups_of_three_environments_at_once_keep_every_password(project: Project) -> None:
    env = cli_env(project)
    runs = [subprocess.Popen([*INVOKE, "setup", "--env", name], cwd=REPO, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for name in ("dev", "alpha", "tester")]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    secrets = envfile.read(project.env_file)
    for name in ("DEV", "ALPHA", "TESTER"):
        for role in ("ADMIN", "OWNER", "APP"):
            assert secrets.get(f"PIPER_{name}_{role}_PASSWORD")
    for name in ("dev", "alpha", "tester"):  # and each password opens its own database
        with connection.connect(credentials.target(load_profile(name, project), project, "app")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (f"piper_{name}",)
