"""docs/ENVIRONMENTS.md: generated from the profiles as tracked, never stale, never holding personal data."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from services import documentation
from services.errors import PiperError
from services.profiles import load_profile, load_profiles
from services.project import Project
from tests.support.cli import INVOKE, run_cli
from tests.support.projects import REPO, make_project


def _row(text: str, label: str) -> list[str]:
    """Return the cells of the table row that starts with label (escaped pipes kept inside their cell)."""
    for line in text.splitlines():
        if line.startswith(f"| {label} |"):
            return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[2:-1]]
    raise AssertionError(f"no row {label!r}")


def test_the_committed_table_is_what_the_profiles_render() -> None:
    """Fails when a profile changed and docs/ENVIRONMENTS.md was not regenerated: run `invoke docs`."""
    done = run_cli([*INVOKE, "docs", "--check"], Project(REPO))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "docs/ENVIRONMENTS.md is up to date\n"


def test_the_table_shows_the_tracked_profiles_not_this_machines_overrides(project: Project,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    (project.root / ".env").write_text("PIPER_ALPHA_PORT=26501\nPIPER_ALPHA_DATA_DIR=postgres_data/elsewhere\n")
    (project.root / ".env").chmod(0o600)
    monkeypatch.setenv("PIPER_TESTER_PORT", "26502")
    assert load_profile("alpha", project).database.port == 26501  # the override applies everywhere else
    tracked = {p.name: p for p in load_profiles(project, overrides=False)}
    assert tracked["alpha"].overrides == () and tracked["alpha"].database.data_dir == "postgres_data/alpha"

    text = documentation.render_environments(project)

    assert "26501" not in text and "26502" not in text and "postgres_data/elsewhere" not in text
    assert _row(text, "port") == [str(tracked["alpha"].database.port), str(tracked["dev"].database.port),
                                  "from `$PIPER_PRODUCTION_DATABASE_URL`", str(tracked["tester"].database.port)]
    assert _row(text, "data directory") == ["`postgres_data/alpha`", "`postgres_data/dev`", "none (remote)",
                                            "`postgres_data/tester`"]
    assert text.splitlines()[2] == documentation.MARKER
    assert _row(text, "`database.port`") == ["`PIPER_ALPHA_PORT`", "`PIPER_DEV_PORT`", "`PIPER_TESTER_PORT`"]


def test_audit_terms_are_counted_and_never_shown(project: Project) -> None:
    dev = load_profile("dev", project)
    assert dev.audit.terms, "dev.yaml is expected to hold the PM's audit terms"

    text = documentation.render_environments(project)

    assert _row(text, "audit terms") == ["0", str(len(dev.audit.terms)), "0", "0"]
    for term in dev.audit.terms:
        assert not re.search(rf"(?<!\w){re.escape(term.term)}(?!\w)", text, flags=re.IGNORECASE), "an audit term leaked"
    # dev's default user is one of its audit terms: withheld, named by file only.
    assert _row(text, "default user")[1] == "withheld: the audit flags it (see `dev.yaml`)"
    assert _row(text, "default user")[0] == "`alfy` (`alfy@example.invalid`)"


def test_values_cannot_break_the_table(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", {"alpha": {"description": "a | b\nsecond line"}})

    text = documentation.render_environments(project)

    assert _row(text, "what it is")[0] == "a \\| b second line"
    table = [line for line in text.split("## Local overrides")[0].splitlines() if line.startswith("|")]
    assert len(table) > 10
    assert {len(re.split(r"(?<!\\)\|", line)) for line in table} == {7}, "every row has one cell per profile"


def test_a_profile_value_that_the_audit_flags_is_never_written(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", {"alpha": {
        "description": "the laptop of Fake Person", "audit": {"terms": [{"term": "Fake Person", "kind": "name"}]}}})

    done = run_cli([*INVOKE, "docs"], project)

    assert done.returncode == 1
    assert done.stderr.startswith("error: docs/ENVIRONMENTS.md would hold personal data (line ")
    assert "Fake Person" not in done.stderr
    assert not (project.root / "docs" / "ENVIRONMENTS.md").exists()
    with pytest.raises(PiperError):
        documentation.render_environments(project)


def test_invoke_docs_writes_checks_and_rewrites(project: Project) -> None:
    target = project.root / "docs" / "ENVIRONMENTS.md"
    stale = run_cli([*INVOKE, "docs", "--check"], project)
    assert (stale.returncode, stale.stdout) == (1, "")
    assert stale.stderr == ("error: out of date with environments/*.yaml: docs/ENVIRONMENTS.md; run `invoke docs` and "
                            "commit the result\n")
    assert not target.exists()

    written = run_cli([*INVOKE, "docs"], project)
    assert (written.returncode, written.stdout) == (0, "docs/ENVIRONMENTS.md written\n")
    assert target.read_text() == documentation.render_environments(project)
    again = run_cli([*INVOKE, "docs"], project)
    assert again.stdout == "docs/ENVIRONMENTS.md already up to date; nothing changed\n"

    alpha = project.environments_dir / "alpha.yaml"
    data = yaml.safe_load(alpha.read_text())
    data["database"]["port"] = 26503
    alpha.write_text(yaml.safe_dump(data, sort_keys=False))
    before = target.read_bytes()
    check = run_cli([*INVOKE, "docs", "--check"], project)
    assert check.returncode == 1 and "run `invoke docs`" in check.stderr
    assert target.read_bytes() == before, "--check changes nothing"

    assert run_cli([*INVOKE, "docs"], project).returncode == 0
    assert _row(target.read_text(), "port")[0] == "26503"
    assert run_cli([*INVOKE, "docs", "--check"], project).stdout == "docs/ENVIRONMENTS.md is up to date\n"


def test_invoke_docs_takes_no_env(project: Project) -> None:
    done = run_cli([*INVOKE, "docs", "--env", "alpha"], project)
    assert done.returncode == 2
    assert done.stderr.startswith("error: unknown option --env")
    assert not (project.root / "docs").exists()
