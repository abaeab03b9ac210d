"""scripts/create_test_alpha_user.py: messages and exit codes of the create-user command's script door
(the service: tests/services/users/test_accounts.py; both doors at once: tests/test_tasks.py)."""

from __future__ import annotations

from scripts import create_test_alpha_user


def test_create_user_validates_and_is_idempotent(alpha_env, capsys) -> None:
    assert create_test_alpha_user.main(["--username", "fake.idem", "--email", "fake.idem@example.invalid", "--env", "alpha"]) == 0
    assert create_test_alpha_user.main(["--username", "fake.idem", "--email", "fake.idem@example.invalid", "--env", "alpha"]) == 0
    out = capsys.readouterr().out
    assert "created user fake.idem" in out and "already exists in alpha" in out and "nothing changed" in out
    assert create_test_alpha_user.main(["--username", "fake.idem", "--email", "other@example.invalid", "--env", "alpha"]) == 2
    assert "already exists in alpha with another email" in capsys.readouterr().err
    assert create_test_alpha_user.main(["--username", "fake.idem2", "--email", "not-an-email", "--env", "alpha"]) == 2
    assert "email 'not-an-email' is not a valid address" in capsys.readouterr().err
    assert create_test_alpha_user.main(["--username", "fake.idem3", "--email", "fake.idem@example.invalid", "--env", "alpha"]) == 2
    assert "already belongs to another user" in capsys.readouterr().err
