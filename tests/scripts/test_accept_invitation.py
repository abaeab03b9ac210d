"""scripts/accept_invitation.py: an import into hosted production writes an invitation that works once.

On the shared hosted production (TLS), each test with a user of its own.
"""

from __future__ import annotations

import io
import stat
import sys

from scripts import accept_invitation, import_user_data
from services import credentials
from services.database import connection
from tests.support.databases import user_row
from tests.support.fakes import HOSTILE


def test_import_into_production_creates_an_invitation_that_works_once(alpha_env, exported, production_env, capsys, monkeypatch) -> None:
    name, path = exported
    p_profile, p_project = production_env
    email = f"{name}@example.invalid"
    assert import_user_data.main(["--username", name, "--email", email, "--data", str(path), "--yes",
                                  "--env", "production"]) == 0
    out = capsys.readouterr().out
    row = user_row(p_profile, p_project, name, table="users")
    assert row == (email, HOSTILE)
    with connection.connect(credentials.target(p_profile, p_project, "owner")) as conn:
        assert conn.execute("SELECT password_hash FROM users WHERE username = %s", (name,)).fetchone() == (None,)
        hashes = [r[0] for r in conn.execute("SELECT token_hash FROM user_invitations i JOIN users u ON u.id = i.user_id "
                                             "WHERE u.username = %s", (name,))]
    emails = sorted((p_project.root / "outbox").glob(f"invitation-{name}-*.eml"))
    assert len(emails) == 1 and str(emails[0]) in out
    assert stat.S_IMODE(emails[0].stat().st_mode) == 0o600
    text = emails[0].read_text()
    token = text.split("one-time token when it asks:")[1].split()[0]
    assert f"To: {email}" in text and len(hashes) == 1 and token not in hashes[0] and len(hashes[0]) == 64
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{token}\na-long-enough-password\n"))
    assert accept_invitation.main(["--password-stdin", "--env", "production"]) == 0
    with connection.connect(credentials.target(p_profile, p_project, "owner")) as conn:
        stored = conn.execute("SELECT password_hash FROM users WHERE username = %s", (name,)).fetchone()[0]
    assert stored.startswith("$argon2id$") and "a-long-enough-password" not in stored
    monkeypatch.setattr(sys, "stdin", io.StringIO("another-long-password\n"))
    assert accept_invitation.main(["--token", token, "--password-stdin", "--env", "production"]) == 1
    assert "already used" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("another-long-password\n"))
    assert accept_invitation.main(["--token", "made-up-token", "--password-stdin", "--env", "production"]) == 1
    assert "not valid" in capsys.readouterr().err


def test_an_expired_invitation_is_refused(alpha_env, exported, production_env, capsys, monkeypatch) -> None:
    name, path = exported
    p_profile, p_project = production_env
    assert import_user_data.main(["--username", name, "--email", f"{name}.x@example.invalid", "--data", str(path),
                                  "--yes", "--env", "production"]) == 0
    capsys.readouterr()
    token = sorted((p_project.root / "outbox").glob(f"invitation-{name}-*.eml"))[-1].read_text().split(
        "one-time token when it asks:")[1].split()[0]
    with connection.connect(credentials.target(p_profile, p_project, "owner")) as conn:
        # Only this test's user's invitation: the production environment is shared.
        conn.execute("UPDATE user_invitations SET expires_at = now() - interval '1 minute' "
                     "WHERE user_id = (SELECT id FROM users WHERE username = %s)", (name,))
        conn.commit()
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-long-enough-password\n"))
    assert accept_invitation.main(["--token", token, "--password-stdin", "--env", "production"]) == 1
    assert "has expired" in capsys.readouterr().err
