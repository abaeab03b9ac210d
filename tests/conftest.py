"""Test fixtures: temporary piper-ops projects with real PostgreSQL servers.

Tests never read the developer's own `.env`, `postgres_data/` or selected environment: every
project lives in a temporary directory named by $PIPER_ROOT, with the repository's profiles copied
in and moved to free ports, and every server it starts is removed at the end of the run.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from services import credentials
from services.environments import setup as env_setup
from services.environments import steps as env_steps
from services.errors import PiperError
from services.postgres import data_dirs, servers
from services.profiles import Profile, load_profile, load_profiles
from services.project import CODE_ROOT, Project

REPO = CODE_ROOT
_STARTED: list[Project] = []
_PORTS_GIVEN: set[int] = set()


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    Chosen below the kernel's ephemeral range (32768 and up on Linux, 49152 on macOS), so that no
    outgoing connection can take it while a test server is stopped.
    """
    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
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
    # dev's setup migrates the PM's personal data from a git-ignored file: here, a fake one.
    (root / "private").mkdir(mode=0o700, exist_ok=True)
    (root / "private" / "dev_user_data.json").write_text(json.dumps({
        "piper_personal_data": 1, "username": "xian", "display_name": "Fake Dev Person",
        "preferences": {"tone": "fake-dev-tone", "projects": ["fake-project-one"]}}))
    project = Project(root.resolve())
    _STARTED.append(project)
    return project


def run_script_step(name: str, argv: list[str]) -> int:
    """The same step runner as tasks.py: a script's main(argv)."""
    import importlib

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


def cli_env(project: Project, **extra: str) -> dict[str, str]:
    """Return an environment for a subprocess acting on the project (and on nothing else)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPER_") or k in _KEEP}
    env["PIPER_ROOT"] = str(project.root)
    env.update(extra)
    return env


def run_cli(argv: list[str], project: Project, *, input: str | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run a command (invoke or a script) as a real subprocess in the project."""
    return subprocess.run(argv, cwd=REPO, env=cli_env(project, **extra), input=input, capture_output=True,
                          text=True, timeout=300, check=False)


INVOKE = [sys.executable, "-m", "invoke", "--search-root", str(REPO)]


def fake_profile(*terms: str, extra: str = "") -> str:
    """Return the YAML of a fake profile `fake` whose audit terms are `term: X, kind: Y` entries."""
    lines = ["name: fake", "branch: main", "default_user: {username: zquux, email: zquux@example.invalid}",
             "database: {name: piper_fake, port: 54399}", *([extra] if extra else []), "audit:", "  terms:"]
    lines += [f"    - {{{term}}}" for term in terms]
    return "\n".join(lines) + "\n"


def fake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, profile_yaml: str, piper_md: str) -> Path:
    """Make a database-free project in tmp_path with one fake profile and a PIPER.md; select it."""
    (tmp_path / "environments").mkdir()
    (tmp_path / "config").mkdir()
    (tmp_path / "environments" / "fake.yaml").write_text(profile_yaml)
    (tmp_path / "config" / "PIPER.md").write_text(piper_md)
    monkeypatch.setenv("PIPER_ROOT", str(tmp_path))
    monkeypatch.delenv("PIPER_ENV", raising=False)
    return tmp_path


# As an ordinary user the template clusters live in the user's cache; tests keep their own.
if hasattr(os, "geteuid") and os.geteuid() != 0:
    os.environ["PIPER_TEMPLATE_CACHE"] = tempfile.mkdtemp(prefix="piper-test-templates-")
# Parsed profiles are cached by content (services/profiles.py); tests keep their own cache too.
os.environ["PIPER_YAML_CACHE"] = tempfile.mkdtemp(prefix="piper-test-yaml-")
_KEEP = {"PIPER_TEMPLATE_CACHE", "PIPER_YAML_CACHE"}


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's selection and secrets out of every test."""
    for key in list(os.environ):
        if key.startswith("PIPER_") and key not in _KEEP:
            monkeypatch.delenv(key)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A fresh project in tmp_path, selected through $PIPER_ROOT; its servers are removed after."""
    proj = make_project(tmp_path / "proj")
    monkeypatch.setenv("PIPER_ROOT", str(proj.root))
    yield proj
    remove_servers(proj)


@pytest.fixture(scope="session")
def alpha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Profile, Project]]:
    """One alpha environment set up once for the tests that only read or add to it."""
    proj = make_project(tmp_path_factory.mktemp("alpha") / "proj")
    profile = load_profile("alpha", proj)
    set_up(profile, proj)
    yield profile, proj
    remove_servers(proj)


@pytest.fixture
def alpha_env(alpha: tuple[Profile, Project], monkeypatch: pytest.MonkeyPatch) -> tuple[Profile, Project]:
    """The shared alpha environment, selected through $PIPER_ROOT for this test."""
    monkeypatch.setenv("PIPER_ROOT", str(alpha[1].root))
    return alpha


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A test that failed half-way may leave a server running: stop them all.
    for proj in _STARTED:
        remove_servers(proj)


@pytest.fixture(scope="session")
def other_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A second shared project (another laptop, as it were) for tester, dev and production."""
    proj = make_project(tmp_path_factory.mktemp("other") / "proj")
    yield proj
    remove_servers(proj)


@pytest.fixture(scope="session")
def tester(other_project: Project) -> tuple[Profile, Project]:
    """The tester environment, set up once in the second shared project."""
    profile = load_profile("tester", other_project)
    set_up(profile, other_project)
    return profile, other_project


@pytest.fixture(scope="session")
def hosted(other_project: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Profile, Project, dict[str, str]]]:
    """A stand-in for hosted production: the dev server of the second shared project behind a TLS front
    (tests/tls_proxy.py, with a self-signed certificate made here), reached through
    $PIPER_PRODUCTION_DATABASE_URL with sslmode=verify-full, and set up as production.

    Yields (production profile, project, {variable: URL}) for the owner's and the application's
    URLs; tests set them in their own environment.
    """
    from services import envfile
    from services.database import connection
    from tests.tls_proxy import TLSProxy

    project = other_project
    profile = load_profile("dev", project)
    set_up(profile, project)
    server = servers.locate(profile, project)
    certs = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(certs / "server.key"),
                    "-out", str(certs / "server.crt")], check=True, capture_output=True)
    admin = credentials.target(profile, project, "admin", dbname="postgres")
    with connection.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE DATABASE piper_production OWNER piper_owner")
    proxy = TLSProxy(("127.0.0.1", server.port), certs / "server.crt", certs / "server.key", free_port())
    secrets = envfile.read(project.env_file)
    tail = f"@localhost:{proxy.port}/piper_production?sslrootcert={certs / 'server.crt'}"
    urls = {
        "PIPER_PRODUCTION_DATABASE_URL": f"postgresql://piper_owner:{secrets['PIPER_DEV_OWNER_PASSWORD']}{tail}",
        "PIPER_PRODUCTION_APP_DATABASE_URL": f"postgresql://piper_app:{secrets['PIPER_DEV_APP_PASSWORD']}{tail}",
    }
    production = load_profile("production", project)
    saved = {key: os.environ.get(key) for key in urls}
    os.environ.update(urls)
    try:
        env_setup.setup_environment(production, project, allow_branch_mismatch=True)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    yield production, project, urls
    proxy.close()


@pytest.fixture
def production_env(hosted, monkeypatch: pytest.MonkeyPatch) -> tuple[Profile, Project]:
    """Hosted production (TLS), selected for this test through $PIPER_ROOT and its URL variable."""
    profile, project, urls = hosted
    monkeypatch.setenv("PIPER_ROOT", str(project.root))
    for key, url in urls.items():
        monkeypatch.setenv(key, url)
    return profile, project
