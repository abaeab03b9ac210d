"""scripts/export_user_data.py: a self-describing document on stdout or in a file, messages on stderr,
refusals in one line, as real subprocesses on the shared alpha environment (each with a user of its own)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time

from scripts import create_test_alpha_user
from services import credentials
from services.database import connection
from tests.support.cli import INVOKE, cli_env, export_user
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


# --- the export folder, and exports that git would track -------------------------------------


def _checkout(project, gitignore: str | None = None) -> None:
    """Make the project a git checkout with the repository's .gitignore (or the one given)."""
    subprocess.run(["git", "init", "-q", str(project.root)], check=True)
    (project.root / ".gitignore").write_text((REPO / ".gitignore").read_text() if gitignore is None else gitignore)


def _untracked(project) -> list[str]:
    """What `git add .` would take: every path git does not ignore."""
    listed = subprocess.run(["git", "-C", str(project.root), "ls-files", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True)
    return listed.stdout.splitlines()


def test_the_export_folder_is_git_ignored_private_and_made_on_first_use(fresh_alpha) -> None:
    import os
    import stat

    _, project = fresh_alpha
    _checkout(project)
    target = project.root / "exports" / "alfy.json"
    result = export_user(project, "alpha", "alfy", "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode().splitlines() == [
        f"exported alfy from alpha to {target} ({target.stat().st_size} bytes, "
        f"sha256 {json.loads(target.read_bytes())['checksum']['value']})"]
    assert stat.S_IMODE((project.root / "exports").stat().st_mode) == 0o700
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert not any(path.startswith("exports") for path in _untracked(project))
    # A shell redirect into the folder: no warning, and the file is closed to 0600 like the folder's others.
    os.chmod(project.root / "exports", 0o755)
    redirected = project.root / "exports" / "again.json"
    with open(redirected, "wb") as stdout:
        os.fchmod(stdout.fileno(), 0o644)
        shell = subprocess.run([sys.executable, "scripts/export_user_data.py", "--username", "alfy", "--env", "alpha"],
                               cwd=REPO, env=cli_env(project), stdout=stdout, stderr=subprocess.PIPE, text=True)
    assert shell.returncode == 0 and len(shell.stderr.splitlines()) == 1 and "warning" not in shell.stderr
    assert stat.S_IMODE(redirected.stat().st_mode) == 0o600
    assert json.loads(redirected.read_bytes())["payload"]["user"]["username"] == "alfy"
    export_user(project, "alpha", "alfy", "--output", str(target))  # the folder is closed again when used
    assert stat.S_IMODE((project.root / "exports").stat().st_mode) == 0o700


def test_a_redirect_git_would_track_is_written_0600_with_a_warning_and_an_output_there_is_refused(
        fresh_alpha, tmp_path) -> None:
    _, project = fresh_alpha
    _checkout(project)
    fix = "export with --output exports/alfy.json instead (git-ignored, 0700)"
    # `> alfy.json` in the checkout (the README's old example): still written, exit 0, and said on stderr.
    leaked = project.root / "alfy.json"
    with open(leaked, "wb") as stdout:
        result = subprocess.run([*INVOKE, "export-user", "--username", "alfy", "--env", "alpha"], cwd=REPO,
                                env=cli_env(project), stdout=stdout, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("exported alfy from alpha to standard output")
    assert lines[1] == ("warning: alfy.json holds personal data inside the checkout and git does not ignore it "
                        f"(`git add` would commit it); {fix}")
    assert json.loads(leaked.read_bytes())["payload"]["user"]["username"] == "alfy"
    assert stat.S_IMODE(leaked.stat().st_mode) == 0o600  # the shell made it with the umask's mode: closed
    assert "alfy.json" in _untracked(project)  # what the warning is about
    # --output to a tracked-to-be path: a file the command would write itself there is refused, nothing written.
    (project.root / "notes").mkdir()
    named = export_user(project, "alpha", "alfy", "--output", str(project.root / "notes" / "mine.json"))
    assert named.returncode == 1 and named.stderr.decode() == (
        "error: notes/mine.json would hold personal data inside the checkout where git does not ignore it "
        f"(`git add` would commit it); {fix}\n")
    assert not (project.root / "notes" / "mine.json").exists()
    # Ignored places in the checkout, and places outside it, say nothing more.
    for quiet in (project.root / "private" / "alfy.json", project.root / "backups" / "alfy.json", tmp_path / "a.json"):
        quiet.parent.mkdir(exist_ok=True)
        done = export_user(project, "alpha", "alfy", "--output", str(quiet))
        assert done.returncode == 0 and len(done.stderr.splitlines()) == 1, done.stderr
        with open(quiet, "wb") as stdout:
            piped = subprocess.run([sys.executable, "scripts/export_user_data.py", "--username", "alfy", "--env",
                                    "alpha"], cwd=REPO, env=cli_env(project), stdout=stdout, stderr=subprocess.PIPE)
        assert piped.returncode == 0 and len(piped.stderr.splitlines()) == 1, piped.stderr
    # A checkout whose .gitignore lacks the export folder: the fix is the rule.
    (project.root / ".gitignore").write_text("private/\n")
    bare = export_user(project, "alpha", "alfy", "--output", str(project.root / "exports" / "alfy.json"))
    assert bare.returncode == 1 and bare.stderr.decode() == (
        "error: exports/alfy.json would hold personal data inside the checkout where git does not ignore it "
        "(`git add` would commit it); add exports/ to .gitignore, then export again\n")


def test_outside_git_an_export_in_the_project_needs_no_warning(alpha_env) -> None:
    _, project = alpha_env  # the test projects are no git checkouts: nothing there can be committed
    out = project.root / "private" / "no-git.json"
    with open(out, "wb") as stdout:
        result = subprocess.run([sys.executable, "scripts/export_user_data.py", "--username", "alfy", "--env", "alpha"],
                                cwd=REPO, env=cli_env(project), stdout=stdout, stderr=subprocess.PIPE, text=True)
    out.unlink()
    assert result.returncode == 0 and len(result.stderr.splitlines()) == 1 and "warning" not in result.stderr


def test_an_export_to_a_terminal_is_refused_naming_the_export_folder(alpha_env) -> None:
    import pexpect

    _, project = alpha_env
    child = pexpect.spawn(sys.executable, ["scripts/export_user_data.py", "--username", "alfy", "--env", "alpha"],
                          cwd=str(REPO), env=cli_env(project), encoding="utf-8", timeout=60)
    try:
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 2
    assert child.before.strip() == ("error: the export holds personal data; pass --output exports/alfy.json "
                                    "(git-ignored, private) or redirect it to a file (> FILE)")
