"""The server account as root: what it can reach."""

from __future__ import annotations

import os

from services.postgres import server_account


def test_can_reach_follows_every_directory_on_the_way(tmp_path) -> None:
    account = server_account.Account("nobody-test", 65530, 65530, frozenset({65530}))
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(tmp_path, 0o755)
    os.chmod(open_dir, 0o755)
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    inner = closed / "inner"
    inner.mkdir(mode=0o755)
    parents_open = all(p.stat().st_mode & 0o001 for p in tmp_path.parents)
    assert server_account.can_reach(account, open_dir) is parents_open
    assert server_account.can_reach(account, inner) is False
    assert server_account.can_reach(account, open_dir, write=True) is False
