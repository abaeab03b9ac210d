"""services/audit/runner.py: unreadable files, segments and worker processes find what one pass finds."""

from __future__ import annotations

import os
import random

import pytest

from services import audit
from services.audit import runner, scanner
from services.errors import AuditError
from services.project import Project
from tests.services.audit import AT, FAKE_EMAIL, git


def test_unreadable_file_cannot_run(project: Project) -> None:
    (project.config_dir / "PIPER.md").mkdir()
    with pytest.raises(AuditError, match="cannot be read"):
        audit.run_audit(audit.piper_md_targets(project), audit.load_rules(project))


def _mixed_text(seed: int, size: int) -> str:
    # Filler, near-misses and every kind of finding, with line breaks of every kind, in random order.
    rng = random.Random(seed)
    words = ["the", "Available", "Privacy", "Christianity", "xianxia", "Grüße", "2024", "3.11", "zquux_bot"]
    hits = ["Zanzibar\n> Quuxley", "Zanzibar   Quuxley", "ZQUUX", "(qx-test-org)", "Christian", "VA's", FAKE_EMAIL,
            "user" + AT + "example.com", "+99 20 7946 0958", "(555) 010-0199", "555-010-0199", "xian"]
    parts, total = [], 0
    while total < size:
        part = (rng.choice(hits) if rng.random() < 0.05 else rng.choice(words)) + rng.choice([" ", "\n", "\r\n", "  "])
        parts.append(part)
        total += len(part)
    return "".join(parts)


def test_segments_and_worker_processes_find_what_one_pass_finds(project: Project,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    (project.config_dir / "PIPER.md").write_text(_mixed_text(1, 300_000), encoding="utf-8")
    rules = audit.load_rules(project)
    monkeypatch.setattr(scanner, "CHUNK_SIZE", 8192)
    monkeypatch.setattr(runner, "BATCH_BYTES", 4096)  # stream the file
    one_pass = audit.run_audit(audit.piper_md_targets(project), rules, workers=1)
    assert len(one_pass.findings) > 500
    monkeypatch.setattr(runner, "SEGMENT_BYTES", 1)  # one segment per worker
    monkeypatch.setattr(runner, "PARALLEL_BYTES", 0)
    for workers in (2, 3, 7):
        assert audit.run_audit(audit.piper_md_targets(project), rules, workers=workers) == one_pass, workers


def test_all_with_worker_processes_keeps_the_order_and_skips_what_git_tracks_but_is_no_file(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    git(project.root, "init", "-q")
    for i in range(40):
        (project.root / f"n{i:02d}.md").write_text(_mixed_text(i, 2000 * (i % 5)), encoding="utf-8")
    (project.root / "blob.bin").write_bytes(b"\0zquux")
    (project.root / "gone.md").write_text("zquux\n")
    (project.root / "link.md").symlink_to("n01.md")
    git(project.root, "add", ".")
    (project.root / "gone.md").unlink()  # tracked, deleted, not yet staged
    rules = audit.load_rules(project)
    one = audit.run_audit(audit.tracked_targets(project, rules), rules, workers=1)
    monkeypatch.setattr(runner, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(runner, "BATCH_FILES", 3)
    assert audit.run_audit(audit.tracked_targets(project, rules), rules, workers=2) == one
    assert one.skipped == ("blob.bin",) and len(one.scanned) == 40
    assert {"gone.md", "link.md", "environments/fake.yaml", "environments/dev.yaml"}.isdisjoint(one.scanned)
    assert [f.path for f in one.findings] == sorted(f.path for f in one.findings) and len(one.findings) > 20


def test_a_file_that_grows_after_its_size_was_taken_is_read_to_its_end(tmp_path) -> None:
    path = tmp_path / "notes.md"
    path.write_bytes(b"first line\n")
    opened = runner._open_target(path, True)
    assert opened is not None
    fd, size = opened
    try:
        with open(path, "ab") as more:
            more.write(b"Christian wrote this after the audit looked\n")
        assert runner._read_to_end(fd, size) == b"first line\nChristian wrote this after the audit looked\n"
    finally:
        os.close(fd)
    empty = tmp_path / "empty.md"
    empty.write_bytes(b"")
    fd, size = runner._open_target(empty, True)
    try:
        assert (size, runner._read_to_end(fd, size)) == (0, b"")
    finally:
        os.close(fd)


def test_many_small_files_are_scanned_a_few_mib_at_a_time_and_found_where_they_are(tmp_path) -> None:
    # Git-tracked files are planned at 4 KiB each, so one batch may hold hundreds of files up to 1 MiB: they
    # must reach the scanner in buffers of about BATCH_BYTES, never all at once.
    names = []
    for n in range(12):
        path = tmp_path / f"notes{n:02d}.md"
        path.write_bytes(b"plain words\n" * 75_000 + (b"Christian\n" if n == 11 else b""))
        names.append(str(path))
    seen: list[int] = []

    class Recording(scanner.Scanner):
        def scan_buffers(self, items):  # type: ignore[no-untyped-def]
            seen.append(sum(len(content) for _, content in items))
            return super().scan_buffers(items)

    rules = audit.load_rules(Project(tmp_path), profiles=False, terms=audit.parse_terms("Christian"))
    batch = runner._Batch(tuple(audit.ScanTarget(name, name, tracked=True) for name in names))
    outcome = runner._scan_batch(Recording(rules.rules), batch)
    assert len(seen) == 3 and max(seen) < runner.BATCH_BYTES + (1 << 20), seen
    assert [(f.path, f.line) for f in outcome.findings] == [(names[11], 75_001)]
