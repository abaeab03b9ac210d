"""scripts/delete_user.py: asks, exports the user first, deletes them; an import of the export undoes it."""

from __future__ import annotations

import stat
import sys

from scripts import delete_user, import_user_data
from services import credentials
from services.database import connection
from tests.support.cli import run_cli
from tests.support.databases import user_row
from tests.support.fakes import HOSTILE
from tests.support.projects import REPO


def test_delete_exports_first_asks_and_can_be_undone_by_import(alpha_env, exported, capsys) -> None:
    profile, project = alpha_env
    name, _ = exported
    refused = run_cli([sys.executable, "scripts/delete_user.py", "--username", name, "--env", "alpha"], project, input="")
    assert refused.returncode == 1 and "pass --yes" in refused.stderr
    assert user_row(profile, project, name) is not None
    assert delete_user.main(["--username", name, "--yes", "--env", "alpha"]) == 0
    out = capsys.readouterr().out
    assert f"deleted {name} from alpha" in out
    assert user_row(profile, project, name) is None
    saved = sorted((project.root / "private" / "deleted-users" / "alpha").glob(f"{name}-*.json"))
    assert len(saved) == 1 and stat.S_IMODE(saved[0].stat().st_mode) == 0o600
    with connection.connect(credentials.target(profile, project, "owner")) as conn:
        leftovers = conn.execute("SELECT count(*) FROM user_data_events WHERE username = %s", (name,)).fetchone()
        deletion = conn.execute("SELECT username, username_sha256 FROM user_data_events WHERE event = 'delete' "
                                "ORDER BY id DESC LIMIT 1").fetchone()
    assert leftovers == (0,) and deletion[0] is None and len(deletion[1]) == 64
    assert import_user_data.main(["--username", name, "--data", str(saved[0]), "--yes", "--env", "alpha"]) == 0
    assert user_row(profile, project, name)[1] == HOSTILE
    assert delete_user.main(["--username", "fake.nobody", "--yes", "--env", "alpha"]) == 2
    assert "no user 'fake.nobody' in environment alpha" in capsys.readouterr().err


def test_delete_refuses_a_checkout_where_git_would_take_its_export(fresh_alpha) -> None:
    import subprocess

    profile, project = fresh_alpha
    subprocess.run(["git", "init", "-q", str(project.root)], check=True)
    (project.root / ".gitignore").write_text("postgres_data/\n.env\n")  # private/ is not ignored here
    refused = run_cli([sys.executable, "scripts/delete_user.py", "--username", "alfy", "--yes", "--env", "alpha"],
                      project, input="")
    assert refused.returncode == 1 and refused.stderr == (
        "error: private/deleted-users/alpha would hold personal data inside the checkout where git does not ignore it "
        "(`git add` would commit it); add private/ to .gitignore, then delete again\n")
    assert user_row(profile, project, "alfy") is not None
    assert not (project.root / "private" / "deleted-users").exists()
    (project.root / ".gitignore").write_text((REPO / ".gitignore").read_text())
    done = run_cli([sys.executable, "scripts/delete_user.py", "--username", "alfy", "--yes", "--env", "alpha"], project)
    assert done.returncode == 0, done.stderr
    assert user_row(profile, project, "alfy") is None
    assert len(list((project.root / "private" / "deleted-users" / "alpha").glob("alfy-*.json"))) == 1
