"""scripts/audit_piper_md.py: exit 0 clean, 1 findings, 2 could not run; redacted text, json and sarif."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts import audit_piper_md
from services.project import CODE_ROOT
from tests.support.fakes import fake_profile, fake_root

FAKE_PROFILE = fake_profile("term: Zanzibar Quuxley, kind: name", "term: zquux, kind: username")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return fake_root(tmp_path, monkeypatch, FAKE_PROFILE, "# generic\nAvailable, relevant, private.\n")


def test_clean_exit_0(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_piper_md.main([]) == 0
    assert "audit: clean; 1 file(s) scanned" in capsys.readouterr().out


def test_findings_exit_1_with_path_line_column_and_redaction(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "config" / "PIPER.md.backup-20250101").write_text("x\nask (zquux) or Zanzibar\nQuuxley\n")
    assert audit_piper_md.main([]) == 1
    out = capsys.readouterr().out
    assert "config/PIPER.md.backup-20250101:2:6: username-" in out and " z**** sha256:" in out
    assert "config/PIPER.md.backup-20250101:2:16: name-" in out and " Z*************** " in out
    assert "zquux" not in out and "Quuxley" not in out


def test_json_and_sarif(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "config" / "PIPER.md").write_text("zquux\n")
    assert audit_piper_md.main(["--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["findings"][0]["match"] == "z****" and data["findings"][0]["line"] == 1
    assert audit_piper_md.main(["--format", "sarif"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0" and len(sarif["runs"][0]["results"]) == 1


def test_allowlist_file_in_config(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "config" / "PIPER.md").write_text("zquux\n")
    audit_piper_md.main(["--format", "json"])
    finding = json.loads(capsys.readouterr().out)["findings"][0]
    (root / "config" / "audit-allowlist.yaml").write_text(
        f"allow:\n  - rule: {finding['rule']}\n    sha256: {finding['sha256']}\n    reason: test\n")
    assert audit_piper_md.main([]) == 0
    assert "1 allowlisted" in capsys.readouterr().out


def test_could_not_run_exit_2(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_piper_md.main(["no/such/file.md"]) == 2
    assert capsys.readouterr().err.startswith("error: no/such/file.md: no such file")
    (root / "environments" / "fake.yaml").write_text(FAKE_PROFILE + "    - {term: '', kind: name}\n")
    assert audit_piper_md.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: fake.yaml: audit.terms[2]") and err.count("\n") == 1
    assert audit_piper_md.main(["--all", "x.md"]) == 2


def _run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PIPER_ENV"} | {"PIPER_ROOT": str(root)}
    return subprocess.run([sys.executable, str(CODE_ROOT / "scripts" / "audit_piper_md.py"), *args], cwd=root,
                          env=env, capture_output=True, text=True)


def test_subprocess_exit_codes(root: Path) -> None:
    assert _run(root).returncode == 0
    (root / "config" / "PIPER.md").write_text("call zquux\n")
    result = _run(root, "--format", "json")
    assert result.returncode == 1 and json.loads(result.stdout)["findings"][0]["column"] == 6
    (root / "config" / "PIPER.md").unlink()
    (root / "config" / "PIPER.md").mkdir()
    result = _run(root)
    assert result.returncode == 2 and result.stderr.startswith("error: config/PIPER.md: cannot be read")


def test_subprocess_staged_as_the_pre_commit_hook_runs_it(root: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    (root / "config" / "PIPER.md").write_text("by Zanzibar Quuxley\n")
    subprocess.run(["git", "add", "config/PIPER.md"], cwd=root, check=True)
    result = _run(root, "--staged")  # the documented local form of the hook before --hook
    assert result.returncode == 1 and ":config/PIPER.md:1:4:" in result.stdout


def test_workers_flag(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / "config" / "PIPER.md").write_text("zquux\n")
    assert audit_piper_md.main(["--workers", "2"]) == 1
    assert "config/PIPER.md:1:1: username-" in capsys.readouterr().out
    assert audit_piper_md.main(["--workers", "0"]) == 2
    assert capsys.readouterr().err == "error: argument --workers: '0' is not a whole number of at least 1; see --help\n"


def test_what_the_audit_must_read_but_cannot_is_exit_2_never_clean(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_piper_md.main(["--allowlist", str(root / "nonexistent.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nonexistent.yaml does not exist" in err and err.count("\n") == 1
    (root / "config" / "PIPER.md").unlink()
    assert audit_piper_md.main([]) == 2
    assert "config/PIPER.md does not exist" in capsys.readouterr().err


def test_a_nul_byte_does_not_hide_personal_data_in_piper_md(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scripts import backup_config

    (root / "config" / "PIPER.md").write_bytes(b"# generic\x00\nask zquux\n")
    assert audit_piper_md.main([]) == 1
    assert "config/PIPER.md:2:5: username-" in capsys.readouterr().out
    assert backup_config.main([]) == 1  # and no backup in config/ copies it
    assert not list((root / "config").glob("PIPER.md.backup-*"))


def test_hook_audits_the_files_given_in_the_repository_of_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "other"
    (repo / "docs").mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / ".piper-audit.yaml").write_text("terms: [Zanzibar Quuxley]\n")
    (repo / "docs" / "a.md").write_text("by zanzibar quuxley\n")
    (repo / "docs" / "link.md").symlink_to(tmp_path)  # a symlink is not followed
    monkeypatch.setenv("PIPER_ROOT", str(tmp_path / "not-this"))  # the hook audits the repository, not $PIPER_ROOT
    monkeypatch.chdir(repo / "docs")
    assert audit_piper_md.main(["--hook", "a.md", "link.md", "../.piper-audit.yaml"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("docs/a.md:1:4: name-") and "1 finding(s) of personal data in 1 file(s)" in out
    assert audit_piper_md.main(["--hook"]) == 0  # pre-commit passed no file: nothing to audit, no PIPER.md needed
    assert "audit: clean; 0 file(s) scanned" in capsys.readouterr().out
    assert audit_piper_md.main(["--hook", "--terms", "quuxley", "--format", "sarif", "a.md"]) == 1
    sarif = json.loads(capsys.readouterr().out)
    assert [r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in sarif["runs"][0]["results"]] \
        == ["docs/a.md", "docs/a.md"]


def test_hook_rules_file_errors_are_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.md").write_text("x\n")
    assert audit_piper_md.main(["--hook", "--rules", "nope.yaml", "a.md"]) == 2
    assert capsys.readouterr().err == "error: nope.yaml does not exist; pass the rules file, or leave --rules out\n"
    assert audit_piper_md.main(["--hook", "--staged"]) == 2
    assert "--staged" in capsys.readouterr().err


def test_hook_console_script_is_declared() -> None:
    import tomllib

    project = tomllib.loads((CODE_ROOT / "pyproject.toml").read_text())
    assert project["project"]["scripts"]["piper-audit-hook"] == "scripts.audit_piper_md:hook_main"
    hooks = (CODE_ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "entry: piper-audit-hook" in hooks and "language: python" in hooks
