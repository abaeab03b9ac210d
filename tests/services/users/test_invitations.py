"""services/users/invitations.py: single-use, expiring invitations to hosted production, stored as a hash.

On the shared hosted production (TLS): each test invites users of its own, and changes only their rows.
"""

from __future__ import annotations

import secrets
import stat

import pytest

from services.errors import UsageError
from services.users import accounts, invitations, store
from tests.support.databases import connect, query


def _invite(profile, project, outbox) -> tuple[str, str]:
    """Create a user of the test's own without a password, and invite them; return (username, token)."""
    name = f"inv-{secrets.token_hex(3)}"
    user = accounts.create_user(profile, project, name, f"{name}@example.invalid")
    with store.user_data_connection(profile, project, acting_user=name) as conn:
        pending = invitations.invite(conn, profile, user.id, name, user.email, display_name="Fake Invitee")
    path = invitations.write_invitation(project, pending, outbox)
    token = path.read_text().split("one-time token when it asks:")[1].split()[0]
    return name, token


def _password_hash(profile, project, name: str) -> str | None:
    return query(profile, project, "SELECT password_hash FROM users WHERE username = %s", (name,))[0][0]


def test_an_invitation_sets_an_argon2id_password_once(production_env, tmp_path) -> None:
    profile, project = production_env
    name, token = _invite(profile, project, tmp_path / "outbox")
    stored = query(profile, project, "SELECT token_hash, used_at FROM user_invitations i JOIN users u ON u.id = i.user_id "
                                     "WHERE u.username = %s", (name,))
    assert stored == [(invitations.token_hash(token), None)] and token not in stored[0][0]
    assert _password_hash(profile, project, name) is None
    accepted = invitations.accept_invitation(profile, project, token, "a-long-enough-password")
    assert accepted.username == name
    hashed = _password_hash(profile, project, name)
    assert hashed is not None and hashed.startswith("$argon2id$") and "a-long-enough-password" not in hashed
    with pytest.raises(invitations.InvitationRefused, match="this invitation was already used; ask for a new one"):
        invitations.accept_invitation(profile, project, token, "another-long-password")
    assert _password_hash(profile, project, name) == hashed
    assert [r[0] for r in query(profile, project, "SELECT event FROM user_data_events WHERE username = %s ORDER BY id",
                                (name,))] == ["invite", "accept"]


def test_unknown_expired_and_short_are_refused_and_change_nothing(production_env, tmp_path) -> None:
    profile, project = production_env
    name, token = _invite(profile, project, tmp_path / "outbox")
    for unknown in ("made-up-token", "", "x" * 201):
        with pytest.raises(invitations.InvitationRefused, match="the invitation token is not valid; copy it whole"):
            invitations.accept_invitation(profile, project, unknown, "a-long-enough-password")
    with pytest.raises(UsageError, match=f"the password is shorter than {invitations.MIN_PASSWORD_LENGTH} characters"):
        invitations.accept_invitation(profile, project, token, "x" * (invitations.MIN_PASSWORD_LENGTH - 1))
    with connect(profile, project) as conn:  # this test's user's invitation only: the environment is shared
        conn.execute("UPDATE user_invitations SET expires_at = now() - interval '1 minute' "
                     "WHERE user_id = (SELECT id FROM users WHERE username = %s)", (name,))
        conn.commit()
    with pytest.raises(invitations.InvitationRefused, match="this invitation has expired; ask for a new one"):
        invitations.accept_invitation(profile, project, token, "a-long-enough-password")
    assert _password_hash(profile, project, name) is None
    assert query(profile, project, "SELECT used_at FROM user_invitations i JOIN users u ON u.id = i.user_id "
                                   "WHERE u.username = %s", (name,)) == [(None,)]


def test_the_email_is_private_names_the_user_and_is_never_overwritten(production_env, tmp_path) -> None:
    profile, project = production_env
    outbox = tmp_path / "outbox"
    name, token = _invite(profile, project, outbox)
    (email,) = outbox.iterdir()
    assert stat.S_IMODE(outbox.stat().st_mode) == 0o700 and stat.S_IMODE(email.stat().st_mode) == 0o600
    text = email.read_text()
    assert email.name.startswith(f"invitation-{name}-") and f"To: {name}@example.invalid" in text and token in text
    assert invitations.outbox_dir(project) == project.root / "outbox"
    with pytest.raises(FileExistsError):
        invitations.write_invitation(project, invitations.PendingInvitation(email.name, "another text"), outbox)
    assert email.read_text() == text
