"""Local overrides (issue 11, section 2): a machine's port, data directory and binaries are set in
the git-ignored `.env` (or the shell) as PIPER_<ENV>_PORT, _DATA_DIR, _SERVER, _BIN_DIR, never by
editing a tracked profile; each is validated as the profile is, and `status` shows them and where
a running server really listens."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from services import envfile
from services.errors import ProfileError
from services.postgres import servers
from services.profiles import check_distinct, load_profile, load_profiles
from services.project import Project
from tests.support.cli import INVOKE, run_cli
from tests.support.projects import free_port


def _status(project: Project, name: str) -> dict:
    result = run_cli([*INVOKE, "status", "--json"], project)
    assert result.returncode == 0, result.stderr
    return next(row for row in json.loads(result.stdout) if row["name"] == name)


def test_an_override_in_env_replaces_the_profiles_value_and_says_where_it_came_from(project: Project) -> None:
    port = free_port()
    envfile.update(project.env_file, {"PIPER_ALPHA_PORT": str(port), "PIPER_ALPHA_DATA_DIR": "postgres_data/alpha2"})
    profile = load_profile("alpha", project)
    assert (profile.database.port, profile.database.data_dir) == (port, "postgres_data/alpha2")
    assert [o.describe() for o in profile.overrides] == [
        f"database.port={port} (PIPER_ALPHA_PORT in .env)",
        "database.data_dir=postgres_data/alpha2 (PIPER_ALPHA_DATA_DIR in .env)"]
    # The other profiles are untouched, and so is the tracked file.
    assert load_profile("tester", project).overrides == ()
    assert f"port: {port}" not in (project.environments_dir / "alpha.yaml").read_text()


def test_the_shell_wins_over_env(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    envfile.update(project.env_file, {"PIPER_TESTER_PORT": str(free_port())})
    shell = free_port()
    monkeypatch.setenv("PIPER_TESTER_PORT", str(shell))
    profile = load_profile("tester", project)
    assert profile.database.port == shell
    assert profile.overrides[0].where == "the shell"


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("PIPER_ALPHA_PORT", "80", "PIPER_ALPHA_PORT (in .env) overrides database.port: it must be a port number between "
                               "1024 and 65535; fix or remove it"),
    ("PIPER_ALPHA_PORT", "5432\n", "PIPER_ALPHA_PORT (in .env) must be a port number"),
    ("PIPER_ALPHA_PORT", "fifty", "PIPER_ALPHA_PORT (in .env) must be a port number between 1024 and 65535, not 'fifty'"),
    ("PIPER_ALPHA_DATA_DIR", "/var/lib/elsewhere", "PIPER_ALPHA_DATA_DIR (in .env) overrides database.data_dir: it "
                                                   "must be a directory under postgres_data/"),
    ("PIPER_ALPHA_DATA_DIR", "postgres_data/../../home", "PIPER_ALPHA_DATA_DIR (in .env) overrides database.data_dir"),
    ("PIPER_ALPHA_SERVER", "hosted", "PIPER_ALPHA_SERVER (in .env) must be embedded or system, not 'hosted'"),
    ("PIPER_ALPHA_SERVER", "system", "key 'database.bin_dir' a system server needs the directory of its binaries "
                                     "(pg_ctl, initdb), with the overrides PIPER_ALPHA_SERVER (in .env)"),
    ("PIPER_PRODUCTION_PORT", "5999", "PIPER_PRODUCTION_PORT (in .env) overrides database.port, but environment "
                                      "'production' is hosted"),
])
def test_a_wrong_override_is_one_error_naming_the_variable(project: Project, variable: str, value: str,
                                                           message: str) -> None:
    project.env_file.write_text(f"{variable}={value!r}\n" if "\n" in value else f"{variable}={value}\n")
    project.env_file.chmod(0o600)
    with pytest.raises(ProfileError) as raised:
        load_profiles(project)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_two_environments_may_not_share_a_port_through_an_override(project: Project) -> None:
    taken = load_profile("alpha", project).database.port
    envfile.update(project.env_file, {"PIPER_TESTER_PORT": str(taken)})
    with pytest.raises(ProfileError, match=r"PIPER_TESTER_PORT in \.env: key 'database.port' is the same as "
                                           r"environment 'alpha' has"):
        check_distinct(load_profile("tester", project), project)


def test_a_taken_port_is_fixed_by_an_override_without_touching_a_tracked_file(project: Project) -> None:
    profile = load_profile("tester", project)
    tracked = (project.environments_dir / "tester.yaml").read_bytes()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", profile.database.port))
        squatter.listen()
        refused = run_cli([*INVOKE, "setup", "--env", "tester"], project)
        assert refused.returncode == 1
        assert (f"port {profile.database.port} on 127.0.0.1 is in use by another program; set "
                f"PIPER_TESTER_PORT=<a free port> in .env") in refused.stderr
        port = free_port()
        envfile.update(project.env_file, {"PIPER_TESTER_PORT": str(port)})
        done = run_cli([*INVOKE, "setup", "--env", "tester"], project)
        assert done.returncode == 0, done.stderr
    assert f"started the server (port {port})" in done.stdout
    row = _status(project, "tester")
    assert (row["running"], row["port"], row["configured_port"]) == (True, port, port)
    assert row["overrides"] == [f"database.port={port} (PIPER_TESTER_PORT in .env)"]
    assert (project.environments_dir / "tester.yaml").read_bytes() == tracked
    shown = run_cli([*INVOKE, "status"], project)
    assert f"tester: local override database.port={port} (PIPER_TESTER_PORT in .env)" in shown.stdout


def test_status_and_commands_follow_the_running_server_until_it_is_restarted(fresh_tester) -> None:
    profile, project = fresh_tester
    old = profile.database.port
    new = free_port()
    envfile.update(project.env_file, {"PIPER_TESTER_PORT": str(new)})
    row = _status(project, "tester")
    # Where the server really is (its postmaster.pid), not what the configuration now says.
    assert (row["running"], row["port"], row["configured_port"]) == (True, old, new)
    assert row["location"].endswith(f"port {old}")
    assert row["revision"] == row["head"] and row["users"] == 1
    assert any(f"runs on port {old} (its postmaster.pid), but port {new} is configured" in n for n in row["notes"])
    # Every command still reaches it where it is.
    check = run_cli([*INVOKE, "verify-isolation", "--env", "tester"], project)
    assert check.returncode == 0, check.stderr
    for command in ("db-stop", "db-start"):
        moved = run_cli([*INVOKE, command, "--env", "tester"], project)
        assert moved.returncode == 0, moved.stderr
    row = _status(project, "tester")
    assert (row["running"], row["port"], row["configured_port"], row["notes"]) == (True, new, new, [])
    assert servers.locate(load_profile("tester", project), project).port == new
    assert f"@127.0.0.1:{new}/piper_tester" in envfile.read(project.env_file)["DATABASE_URL"]  # what the app reads
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{new}"], capture_output=True, text=True, check=False)
    if listening.returncode == 0:  # iproute2's ss, where the machine has it
        assert f"127.0.0.1:{new}" in listening.stdout
