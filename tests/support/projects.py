"""Temporary piper-ops projects: the repository's profiles on free ports, set up the way `invoke setup` does.

Every project made here is recorded, in this process and in the run's temporary root, so that its
servers are stopped and deleted at the end of the run even when a test failed half-way (or a
pytest-xdist worker died).
"""

from __future__ import annotations

import importlib
import json
import os
import random
import shutil
import socket
from pathlib import Path

import yaml

from services.environments import setup as env_setup
from services.environments import steps as env_steps
from services.errors import PiperError
from services.postgres import data_dirs, servers
from services.profiles import Profile, load_profiles
from services.project import CODE_ROOT, Project
from tests.support import temp_root

REPO = CODE_ROOT
_made: list[Project] = []
_ports_given: set[int] = set()
_REGISTRY = "projects.txt"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now and no other test was given.

    Chosen below the kernel's ephemeral range (32768 and up on Linux, 49152 on macOS), so that no
    outgoing connection can take it while a test server is stopped. Within a test run a port is
    claimed by a file in the run's temporary root, so that two pytest-xdist workers never get
    the same one.
    """
    claims = temp_root.path("ports")
    while True:
        port = random.randint(20000, 32000)
        if port in _ports_given:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        if claims is not None:
            try:
                os.close(os.open(claims / str(port), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                continue
        _ports_given.add(port)
        return port


def make_project(root: Path, edits: dict[str, dict] | None = None) -> Project:
    """Create a project in root: the repository's profiles on free ports, plus optional edits.

    edits maps a profile name to keys to change, e.g. {"alpha": {"branch_policy": "refuse"}};
    a nested mapping such as {"database": {"port": 5}} is merged into the profile's.
    """
    (root / "environments").mkdir(parents=True, exist_ok=True)
    for source in sorted((REPO / "environments").glob("*.yaml")):
        data = yaml.safe_load(source.read_text())
        if data["database"].get("server") != "hosted":
            data["database"]["port"] = free_port()
        for key, value in (edits or {}).get(data["name"], {}).items():
            if isinstance(value, dict):
                data.setdefault(key, {}).update(value)
            else:
                data[key] = value
        (root / "environments" / source.name).write_text(yaml.safe_dump(data, sort_keys=False))
    if (REPO / "config").is_dir():
        shutil.copytree(REPO / "config", root / "config", dirs_exist_ok=True)
    # The `alembic` command in the project, as in a checkout, on this checkout's migrations/.
    ini = (REPO / "alembic.ini").read_text(encoding="utf-8")
    (root / "alembic.ini").write_text(ini.replace("%(here)s/migrations", str(REPO / "migrations")), encoding="utf-8")
    # dev's setup migrates the PM's personal data from a git-ignored file: here, a fake one.
    (root / "private").mkdir(mode=0o700, exist_ok=True)
    (root / "private" / "dev_user_data.json").write_text(json.dumps({
        "piper_personal_data": 1, "username": "xian", "display_name": "Fake Dev Person",
        "preferences": {"tone": "fake-dev-tone", "projects": ["fake-project-one"]}}))
    return register_project(root)


def register_project(root: Path) -> Project:
    """Record a project made some other way (a fresh checkout) so that its servers are removed at the end of the run."""
    project = Project(root.resolve())
    _made.append(project)
    run_root = temp_root.current()
    if run_root is not None:
        with open(run_root / _REGISTRY, "a", encoding="utf-8") as registry:
            registry.write(f"{project.root}\n")
    return project


def run_script_step(name: str, argv: list[str]) -> int:
    """The same step runner as the setup command: a script's main(argv)."""
    return int(importlib.import_module(f"scripts.{name}").main(argv))


def set_up(profile: Profile, project: Project, data_file: str | None = None) -> env_setup.SetupReport:
    """Run `invoke setup`'s two halves for a profile in a temporary project."""
    old = os.environ.get("PIPER_ROOT")
    os.environ["PIPER_ROOT"] = str(project.root)
    try:
        plan = env_steps.plan_setup_steps(profile, project, data_file)
        report = env_setup.setup_environment(profile, project)
        env_steps.run_setup_steps(plan, run_script_step)
    finally:
        if old is None:
            os.environ.pop("PIPER_ROOT", None)
        else:
            os.environ["PIPER_ROOT"] = old
    return report


def remove_servers(project: Project) -> None:
    """Stop and delete every local server of a temporary project."""
    if not project.environments_dir.is_dir():
        return
    try:
        profiles = load_profiles(project)
    except PiperError:
        return
    for profile in profiles:
        if profile.hosted:
            continue
        try:
            data_dirs.remove(servers.locate(profile, project))
        except PiperError:
            pass


def remove_made_servers() -> None:
    """Stop and delete the servers of every project this process made."""
    for project in _made:
        remove_servers(project)


def remove_recorded_servers(run_root: Path) -> None:
    """Stop and delete the servers of every project any process of the run recorded in run_root."""
    try:
        recorded = (run_root / _REGISTRY).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return
    for line in dict.fromkeys(recorded):
        if line:
            remove_servers(Project(Path(line)))
