"""services/project.py: where a project keeps things, and which environment a command acts on (never a guess)."""

from __future__ import annotations

import pytest

from services import envfile
from services.errors import UsageError
from services.project import CODE_ROOT, Project, current_project, select_environment


def test_the_environment_comes_from_the_flag_then_the_variable_then_env_file(tmp_path, monkeypatch) -> None:
    project = Project(tmp_path)
    known = ["alpha", "dev"]
    with pytest.raises(UsageError) as caught:
        select_environment(None, project, known)
    assert str(caught.value) == ("no environment selected; pass --env NAME, set PIPER_ENV, or run `invoke setup --env "
                                 "NAME` (profiles: alpha, dev)")
    with pytest.raises(UsageError, match=r"\(profiles: none found\)"):
        select_environment(None, project, [])
    envfile.update(project.env_file, {"PIPER_ENV": "dev"})
    assert select_environment(None, project, known) == "dev"
    monkeypatch.setenv("PIPER_ENV", "tester")
    assert select_environment(None, project, known) == "tester"
    assert select_environment("alpha", project, known) == "alpha"


def test_the_project_is_named_by_piper_root_and_code_comes_from_the_checkout(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PIPER_ROOT", raising=False)
    assert current_project() == Project(CODE_ROOT)
    monkeypatch.setenv("PIPER_ROOT", str(tmp_path))
    project = current_project()
    assert project.root == tmp_path.resolve()
    assert (project.env_file, project.data_root) == (tmp_path.resolve() / ".env", tmp_path.resolve() / "postgres_data")
    assert project.migrations_dir == CODE_ROOT / "migrations" and project.scripts_dir == CODE_ROOT / "scripts"
