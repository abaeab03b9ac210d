"""Template clusters: shared by clones of one build, pruned when unused, no leftovers after a killed build."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from services.postgres import servers, templates


def test_clones_share_one_template_and_unused_templates_are_pruned(alpha_env, tmp_path) -> None:
    import dataclasses
    import shutil as sh

    profile, project = alpha_env
    server = servers.locate(profile, project)
    elsewhere = tmp_path / "other-venv" / "bin"  # the same build installed somewhere else
    elsewhere.mkdir(parents=True)
    sh.copy2(server.bin_dir / "postgres", elsewhere / "postgres")
    moved = dataclasses.replace(server, bin_dir=elsewhere)
    assert templates.template_key(moved) == templates.template_key(server)
    (elsewhere / "postgres").write_bytes((server.bin_dir / "postgres").read_bytes() + b"\0")  # another build
    assert templates.template_key(dataclasses.replace(server, bin_dir=elsewhere)) != templates.template_key(server)

    root = tmp_path / "templates"
    for name, age_days in (("current", 400), ("stale", templates.TEMPLATE_UNUSED_DAYS + 1), ("recent", 1)):
        (root / name / "data").mkdir(parents=True)
        marker = root / name / ".complete"
        marker.write_text("piper-template-1")
        when = time.time() - age_days * 86400
        os.utime(marker, (when, when))
    templates.prune_unused(root / "current")
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["current", "recent"]


def test_the_next_build_removes_a_killed_build_and_its_password_file(alpha_env, monkeypatch) -> None:
    profile, project = alpha_env
    server = servers.locate(profile, project)
    # A template of its own (another way of making one, so another key): the shared one is left alone.
    monkeypatch.setattr(templates, "_TEMPLATE_FORMAT", f"piper-template-test-{os.getpid()}-{time.time_ns()}")
    base = templates.template_dir(server)
    assert not base.exists()
    # What a setup killed during initdb leaves: its staging directory, initdb's password file in it.
    leftover = base.with_name(f"{base.name}.tmp999999999")
    (leftover / "data").mkdir(parents=True)
    (leftover / templates.INITDB_PASSWORD_FILE).write_text("throwaway-superuser-password\n")
    password_files = []
    run_tool = servers.run_tool

    def recording_run_tool(server: servers.Server, argv: list[str], *, what: str) -> None:
        password_files.extend(Path(a.split("=", 1)[1]) for a in argv if a.startswith("--pwfile="))
        run_tool(server, argv, what=what)

    monkeypatch.setattr(servers, "run_tool", recording_run_tool)
    try:
        data = templates.ensure_template(server)
        assert not leftover.exists(), "the killed build's staging directory (and password file) was left behind"
        assert (data / "PG_VERSION").is_file()
        # initdb read its password from the template's own staging directory, not from /tmp, and
        # the finished template keeps only the initial password file that copies carry.
        [password_file] = password_files
        assert password_file.parent.parent == base.parent and password_file.parent.name.startswith(f"{base.name}.tmp")
        assert not password_file.exists() and not password_file.parent.exists()
        assert not (base / templates.INITDB_PASSWORD_FILE).exists()
        assert (data / templates.INITIAL_PASSWORD_FILE).is_file()
    finally:
        shutil.rmtree(base, ignore_errors=True)
        Path(f"{base}.lock").unlink(missing_ok=True)
