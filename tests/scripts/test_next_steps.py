"""The `next:` hints after setup name what a user of that environment really does next (issue 11, section 6)."""

from __future__ import annotations

from scripts._environments import next_steps
from services.profiles import load_profiles
from services.project import CODE_ROOT, Project
from tests.support.cli import INVOKE, run_cli


def test_production_is_never_told_to_create_users() -> None:
    profiles = {p.name: p for p in load_profiles(Project(CODE_ROOT))}
    production = " ".join(next_steps(profiles["production"]))
    assert "create-user" not in production and "create_test_alpha_user" not in production
    assert "invoke import-user --env production" in production and "invoke accept-invitation --env production" in production
    dev = " ".join(next_steps(profiles["dev"]))
    assert "invoke audit-piper-md" in dev and "create-user" not in dev
    for name in ("alpha", "tester"):
        hints = " ".join(next_steps(profiles[name]))
        assert f"invoke create-user --env {name}" in hints and "--output exports/U.json" in hints


def test_every_hinted_command_exists(project: Project) -> None:
    listed = run_cli([*INVOKE, "--list"], project).stdout
    for profile in load_profiles(project):
        for hint in next_steps(profile):
            for command in [part.split("`")[0] for part in hint.split("`invoke ")[1:]]:
                assert command.split()[0] in listed, command


def test_setup_prints_the_hints_of_its_environment(fresh_tester) -> None:
    profile, project = fresh_tester
    again = run_cli([*INVOKE, "setup", "--env", "tester"], project)
    assert again.returncode == 0, again.stderr
    assert "next: `invoke verify-isolation --env tester` to prove the isolation holds" in again.stdout
    assert "next: `invoke create-user --env tester --username NAME` to add a user" in again.stdout
