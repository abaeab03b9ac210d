"""scripts/export_user_data.py: a self-describing document on stdout or in a file, messages on stderr,
refusals in one line, as real subprocesses on the shared alpha environment (each with a user of its own)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from scripts import create_test_alpha_user
from services import credentials
from services.database import connection
from tests.support.cli import cli_env, export_user
from tests.support.databases import set_preferences
from tests.support.fakes import HOSTILE
from tests.support.projects import REPO


def _new_user(name: str) -> str:
    assert create_test_alpha_user.main(["--username", name, "--env", "alpha"]) == 0
    return name


def test_export_is_a_self_describing_document_on_stdout_with_messages_on_stderr(alpha_env, exported) -> None:
    profile, project = alpha_env
    name, path = exported
    document = json.loads(path.read_bytes())
    assert document["format"] == "piper-user-export" and document["format_version"] == 1
    assert document["source"] == {"environment": "alpha", "database": "piper_alpha",
                                  "schema_revision": document["source"]["schema_revision"]}
    assert document["payload"]["user"]["username"] == name and "password_hash" not in document["payload"]["user"]
    assert document["payload"]["preferences"] == HOSTILE
    assert len(document["checksum"]["value"]) == 64 and document["exported_at"]
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        events = conn.execute("SELECT checksum, environment FROM user_data_events WHERE username = %s AND event = 'export'",
                              (name,)).fetchall()
    assert events == [(document["checksum"]["value"], "alpha")]


def test_export_selected_keys_and_refuse_an_unknown_key(alpha_env, exported) -> None:
    _, project = alpha_env
    name, _ = exported
    result = export_user(project, "alpha", name, "--keys", "nulls,a.b.c")
    assert result.returncode == 0
    assert json.loads(result.stdout)["payload"]["preferences"] == {"nulls": None, "a.b.c": HOSTILE["a.b.c"]}
    missing = export_user(project, "alpha", name, "--keys", "nope")
    assert missing.returncode == 2 and missing.stdout == b""
    assert b"has no preference key 'nope'" in missing.stderr


def test_a_local_export_never_loads_the_driver_and_refusals_still_name_the_fix(alpha_env, tmp_path) -> None:
    profile, project = alpha_env
    name = _new_user("xfer-no-driver")
    set_preferences(profile, project, name, HOSTILE)
    out = tmp_path / "out.json"
    probe = ("import sys; from scripts import export_user_data as e; rc = e.main(sys.argv[1:]); "
             "print(rc, 'psycopg' in sys.modules, file=sys.stderr)")
    for extra, code, loaded, message in (
        ([], 0, "False", f"exported {name} from alpha to {out}"),
        (["--keys", "nulls"], 0, "False", f"exported {name} from alpha"),
        (["--keys", "nope"], 2, "True", f"error: user {name!r} has no preference key 'nope'"),
    ):
        result = subprocess.run([sys.executable, "-c", probe, "--username", name, "--env", "alpha", "--output", str(out),
                                 *extra], cwd=REPO, env=cli_env(project), capture_output=True, text=True, check=False)
        assert result.stderr.splitlines()[-1] == f"{code} {loaded}", result.stderr
        assert message in result.stderr
    assert json.loads(out.read_bytes())["payload"]["preferences"] == {"nulls": None}
    unknown = export_user(project, "alpha", "fake.nobody.here", "--output", str(tmp_path / "none.json"))
    assert unknown.returncode == 2 and b"no user 'fake.nobody.here' in environment alpha; users: " in unknown.stderr
    assert not (tmp_path / "none.json").exists()
    nowhere = export_user(project, "alpha", name, "--output", str(tmp_path / "missing" / "x.json"))
    assert nowhere.returncode == 2 and not (tmp_path / "missing").exists()
    assert nowhere.stderr.decode().splitlines() == [
        f"error: {tmp_path / 'missing'} is not a directory; create it or pass another --output"]
    folder = export_user(project, "alpha", name, "--output", str(tmp_path))
    assert folder.returncode == 2 and folder.stderr.decode().splitlines() == [
        f"error: {tmp_path} is a directory; name the file, e.g. --output {tmp_path / (name + '.json')}"]


def test_an_export_into_a_pipe_closed_early_fails_with_one_line(alpha_env) -> None:
    profile, project = alpha_env
    name = _new_user("xfer-closed-pipe")
    set_preferences(profile, project, name, {"big": "x" * 2_000_000})  # far more than a pipe holds
    process = subprocess.Popen([sys.executable, "scripts/export_user_data.py", "--username", name, "--env", "alpha"],
                               cwd=REPO, env=cli_env(project), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(100).startswith(b"{")
    process.stdout.close()  # like `| head -c 100`
    errors = process.stderr.read().decode()
    assert process.wait() == 1
    assert errors.splitlines() == ["error: standard output was closed before everything was written; "
                                   "redirect it to a file (> FILE) or pass --output FILE"]


def test_an_export_racing_a_delete_waits_for_it_then_finds_no_user_and_records_nothing(alpha_env, tmp_path) -> None:
    profile, project = alpha_env
    name = _new_user("xfer-race-delete")
    set_preferences(profile, project, name, HOSTILE)
    out = tmp_path / "out.json"
    with connection.connect(credentials.target(profile, project, "owner")) as deleting:
        deleting.execute("DELETE FROM alpha_users WHERE username = %s", (name,))  # not committed yet
        export = subprocess.Popen([sys.executable, "scripts/export_user_data.py", "--username", name, "--env", "alpha",
                                   "--output", str(out)], cwd=REPO, env=cli_env(project),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert export.poll() is None  # waiting on the row the delete holds
        deleting.commit()
    _, errors = export.communicate(timeout=120)
    assert export.returncode == 2 and f"no user {name!r} in environment alpha" in errors
    assert not out.exists()
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        assert conn.execute("SELECT count(*) FROM user_data_events WHERE username = %s", (name,)).fetchone() == (0,)


def test_an_export_through_a_device_or_fifo_writes_through_and_never_replaces_it(alpha_env, tmp_path) -> None:
    import os
    import stat
    import threading

    _, project = alpha_env
    name = _new_user("xfer-device")
    script = [sys.executable, "scripts/export_user_data.py", "--username", name, "--env", "alpha"]
    devnull = subprocess.run([*script, "--output", "/dev/null"], cwd=REPO, env=cli_env(project), capture_output=True,
                             text=True, timeout=120, check=False)
    assert devnull.returncode == 0, devnull.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)  # as root, too: still the device
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    through = subprocess.run([*script, "--output", str(fifo)], cwd=REPO, env=cli_env(project), capture_output=True,
                             text=True, timeout=120, check=False)
    reader.join(timeout=60)
    assert through.returncode == 0, through.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(received[0])["payload"]["user"]["username"] == name
    full = subprocess.run([*script, "--output", "/dev/full"], cwd=REPO, env=cli_env(project), capture_output=True,
                          text=True, timeout=120, check=False)
    assert full.returncode == 1 and "Traceback" not in full.stderr
    assert full.stderr.splitlines()[-1].startswith("error: the export could not be written to /dev/full")
    assert not list((project.root / "private").glob(".export.*"))  # nothing of it left behind
