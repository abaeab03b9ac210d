"""The audit as pre-commit's users run it: the real `pre-commit`, scratch git repositories, real commits.

- the remote form (`repo: <piper-ops>`, `rev: <sha>`, `id: audit-piper-md`) in a repository that is
  not a piper-ops checkout: rules from its `.piper-audit.yaml` or the hook's `args`, no PIPER.md;
- the same form in a piper-ops project (rules from its profiles);
- the local form of this repository's .pre-commit-config.yaml, and the older documented one
  (`--staged`, `pass_filenames: false`).

A clean commit passes, a leaking one is refused, and `pre-commit run --all-files` (CI) fails on a
leak that is already committed. pre-commit installs the hook's environment once per revision: the
whole run shares one PRE_COMMIT_HOME and one revision of this working tree, inside the run's
private temporary root (tests/support/temp_root.py), so nothing is left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from services.project import CODE_ROOT
from tests.support import temp_root

FAKE_TERM = "Zanzibar Quuxley"
EXPORT = '{"format": "piper-user-export", "format_version": 1, "payload": {"user": {"username": "zquux"}}}\n'
_GIT_ID = {"GIT_AUTHOR_NAME": "Fake Tester", "GIT_AUTHOR_EMAIL": "fake.tester@example.invalid",
           "GIT_COMMITTER_NAME": "Fake Tester", "GIT_COMMITTER_EMAIL": "fake.tester@example.invalid"}


def _shared() -> Path:
    shared = temp_root.path("pre-commit")
    assert shared is not None, "run under pytest (tests/conftest.py makes the run's temporary root)"
    return shared


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPER_", "GIT_", "PRE_COMMIT"))}
    env.update(_GIT_ID, PRE_COMMIT_HOME=str(_shared() / "home"), PIP_DISABLE_PIP_VERSION_CHECK="1",
               PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]))
    return env


def _run(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # One stream, as a user sees it: a hook run by `git commit` writes to standard error.
    return subprocess.run(list(argv), cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = _run(cwd, "git", *args)
    assert result.returncode == 0, result.stdout
    return result


def _pre_commit(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(cwd, sys.executable, "-m", "pre_commit", *args)


def _copy_tree(dest: Path) -> None:
    # This working tree as .ci/run copies it: tracked files and new ones git does not ignore.
    dest.mkdir(parents=True)
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=CODE_ROOT,
                           capture_output=True, check=True).stdout
    names = [n for n in files.decode("utf-8", "surrogateescape").split("\0") if n and (CODE_ROOT / n).is_file()]
    packed = subprocess.run(["tar", "--null", "-T", "-", "-cf", "-"], cwd=CODE_ROOT,
                            input="\0".join(names).encode("utf-8", "surrogateescape"), capture_output=True, check=True)
    subprocess.run(["tar", "-C", str(dest), "-xf", "-"], input=packed.stdout, check=True)


@pytest.fixture(scope="session")
def hook_repo() -> tuple[Path, str]:
    """A git repository holding this working tree at one commit: the hook's `repo` and `rev` (shared by workers)."""
    shared = _shared()
    with FileLock(str(shared / "hook-repo.lock")):
        repo, rev_file = shared / "piper-ops", shared / "rev"
        if not rev_file.exists():
            _copy_tree(repo)
            _git(repo, "init", "-q")
            _git(repo, "add", "-A")
            _git(repo, "commit", "-qm", "piper-ops under test", "--no-verify")
            rev_file.write_text(_git(repo, "rev-parse", "HEAD").stdout.strip())
            # The hook's environment, installed once for the run (about 10 s with a warm pip cache).
            probe = shared / "probe"
            probe.mkdir()
            _git(probe, "init", "-q")
            (probe / ".pre-commit-config.yaml").write_text(_remote_config(repo, rev_file.read_text()))
            installed = _pre_commit(probe, "install-hooks")
            assert installed.returncode == 0, installed.stdout
        return repo, rev_file.read_text()


def _remote_config(repo: Path, rev: str, args: str = "") -> str:
    return (f"repos:\n  - repo: {repo}\n    rev: {rev}\n    hooks:\n      - id: audit-piper-md\n"
            + (f"        args: {args}\n" if args else ""))


def _scratch(tmp_path: Path, config: str) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / ".pre-commit-config.yaml").write_text(config)
    (root / "README.md").write_text("# A project\nAvailable, relevant, evaluate.\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "start", "--no-verify")
    installed = _pre_commit(root, "install")
    assert installed.returncode == 0, installed.stdout
    return root


def _commit(root: Path, name: str, content: str) -> subprocess.CompletedProcess[str]:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    _git(root, "add", name)
    return _run(root, "git", "commit", "-m", f"add {name}")


def _commits(root: Path) -> int:
    return int(_git(root, "rev-list", "--count", "HEAD").stdout)


def test_remote_form_in_another_repository_with_its_own_rules_file(hook_repo: tuple[Path, str], tmp_path: Path) -> None:
    root = _scratch(tmp_path, _remote_config(*hook_repo))
    (root / ".piper-audit.yaml").write_text(f"terms:\n  - {{term: {FAKE_TERM}, kind: name}}\n")
    clean = _commit(root, ".piper-audit.yaml", (root / ".piper-audit.yaml").read_text())
    assert clean.returncode == 0, clean.stdout  # the rules file itself is never a finding
    assert _commit(root, "docs/notes.md", "Nothing personal here.\n").returncode == 0
    before = _commits(root)
    leak = _commit(root, "docs/team.md", "Ask zanzibar QUUXLEY.\n")
    assert leak.returncode == 1 and "Failed" in leak.stdout
    assert "docs/team.md:1:5: name-" in leak.stdout and " z*************** " in leak.stdout
    assert "QUUXLEY" not in leak.stdout and _commits(root) == before
    # CI: `run --all-files` audits what is committed, not only what is staged.
    _git(root, "commit", "-qm", "leak anyway", "--no-verify")
    ci = _pre_commit(root, "run", "--all-files")
    assert ci.returncode == 1 and "docs/team.md:1:5: name-" in ci.stdout, ci.stdout


def test_remote_form_with_terms_in_args_and_no_piper_md(hook_repo: tuple[Path, str], tmp_path: Path) -> None:
    root = _scratch(tmp_path, _remote_config(*hook_repo, args=f'[--terms, "qx-test-org,{FAKE_TERM}"]'))
    assert not (root / "config" / "PIPER.md").exists()
    assert _pre_commit(root, "run", "--all-files").returncode == 0
    leak = _commit(root, "src/app.py", "OWNER = 'Qx-Test-Org'\n")
    assert leak.returncode == 1 and "src/app.py:1:10: other-" in leak.stdout, leak.stdout


def test_an_export_is_blocked_whatever_its_name_and_an_address_by_the_detectors(
        hook_repo: tuple[Path, str], tmp_path: Path) -> None:
    root = _scratch(tmp_path, _remote_config(*hook_repo))
    blocked = _commit(root, "backup-2025.txt", EXPORT)
    assert blocked.returncode == 1 and "backup-2025.txt:1:2: export-document (document)" in blocked.stdout
    _git(root, "reset", "-q")  # unstage it (the scratch repository's own index)
    (root / "backup-2025.txt").unlink()
    address = _commit(root, "contact.md", "mail zanzibar.quuxley" + "@" + "quux-mail.zz\n")
    assert address.returncode == 1 and "contact.md:1:6: email-address (email)" in address.stdout


def test_remote_form_in_a_piper_ops_project_uses_its_profiles(hook_repo: tuple[Path, str], tmp_path: Path) -> None:
    root = _scratch(tmp_path, _remote_config(*hook_repo))
    (root / "environments").mkdir()
    (root / "environments" / "fake.yaml").write_text(
        "name: fake\nbranch: main\ndefault_user: {username: zquux, email: zquux@example.invalid}\n"
        "database: {name: piper_fake, port: 54399}\naudit:\n  terms:\n    - {term: zquux, kind: username}\n")
    assert _commit(root, "environments/fake.yaml", (root / "environments" / "fake.yaml").read_text()).returncode == 0
    leak = _commit(root, "config/PIPER.md", "# generic\nask zquux\n")
    assert leak.returncode == 1 and "config/PIPER.md:2:5: username-" in leak.stdout, leak.stdout


def test_another_repositorys_own_environments_folder_is_not_read_as_profiles(
        hook_repo: tuple[Path, str], tmp_path: Path) -> None:
    root = _scratch(tmp_path, _remote_config(*hook_repo, args=f'[--terms, "{FAKE_TERM}"]'))
    (root / "environments").mkdir()
    staging = "replicas: 3\nimage: web:1.2\n"  # a deployment's values, not a piper-ops profile
    assert _commit(root, "environments/staging.yaml", staging).returncode == 0
    leak = _commit(root, "docs/team.md", f"Ask {FAKE_TERM}.\n")
    assert leak.returncode == 1 and "docs/team.md:1:5: other-" in leak.stdout, leak.stdout  # --terms' kind


def test_local_forms_in_a_piper_ops_checkout(hook_repo: tuple[Path, str], tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    _copy_tree(root)
    (root / "environments" / "fake.yaml").write_text(
        "name: fake\nbranch: main\ndefault_user: {username: zquux, email: zquux@example.invalid}\n"
        "database: {name: piper_fake, port: 54399}\naudit:\n  terms:\n    - {term: zquux, kind: username}\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "checkout", "--no-verify")
    assert "entry: python scripts/audit_piper_md.py --hook" in (root / ".pre-commit-config.yaml").read_text()
    assert _pre_commit(root, "install").returncode == 0
    assert _commit(root, "docs/extra.md", "Available and relevant.\n").returncode == 0
    leak = _commit(root, "docs/extra.md", "Available, says zquux.\n")
    assert leak.returncode == 1 and "docs/extra.md:1:17: username-" in leak.stdout, leak.stdout
    _git(root, "commit", "-qm", "leak anyway", "--no-verify")
    ci = _pre_commit(root, "run", "--all-files")
    assert ci.returncode == 1 and "docs/extra.md:1:17: username-" in ci.stdout
    # The form documented before --hook: the staged PIPER.md, no file names.
    (root / ".pre-commit-config.yaml").write_text(
        "repos:\n  - repo: local\n    hooks:\n      - id: audit-piper-md\n        name: audit PIPER.md\n"
        "        entry: python scripts/audit_piper_md.py --staged\n        language: system\n"
        "        pass_filenames: false\n        always_run: true\n")
    _git(root, "add", ".pre-commit-config.yaml")
    old = _commit(root, "config/PIPER.md", "# generic\nask zquux\n")
    assert old.returncode == 1 and ":config/PIPER.md:2:5: username-" in old.stdout, old.stdout
