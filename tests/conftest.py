"""Fixtures and hooks: temporary piper-ops projects with real PostgreSQL servers, in one private directory.

Tests never read the developer's own `.env`, `postgres_data/`, caches or selected environment:
every project lives in a temporary directory named by $PIPER_ROOT, with the repository's profiles
copied in and moved to free ports. Everything a run makes lives in one private directory
(tests/support/temp_root.py), which is removed at the end of the run after every server it
started is stopped; pass `--basetemp DIR` to keep the test projects (their `.env` files hold
passwords) in a directory of your own instead.

Which environment a test gets:
- `project`: a fresh project, nothing set up (each setup in it costs about a second);
- `fresh_alpha`, `fresh_tester`: a fresh project with that environment set up, for a test that
  changes the environment in a way another test could notice (stops its server, changes roles,
  grants, passwords, profiles or files, restores a backup, deletes its default user);
- `alpha_env`, `tester`, `production_env`: environments shared by the whole run (per pytest-xdist
  worker), for tests that only read them or add users of their own with unique names.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import credentials, envfile
from services.database import connection
from services.environments import setup as env_setup
from services.postgres import server_account, servers
from services.profiles import Profile, load_profile
from services.project import Project
from tests.support import temp_root
from tests.support.cli import KEPT_VARIABLES
from tests.support.projects import (
    free_port,
    make_project,
    remove_made_servers,
    remove_recorded_servers,
    remove_servers,
    set_up,
)
from tests.support.tls_proxy import TLSProxy

_OWN_ROOT = pytest.StashKey[Path]()
_SAVED = pytest.StashKey[dict[str, str | None]]()
_VARIABLES = ("TMPDIR", "PIPER_YAML_CACHE", "PIPER_TEMPLATE_CACHE")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Before pytest's own tmp_path plugin reads --basetemp. A pytest-xdist worker uses the root of
    # the process that started it; that process made it and removes it.
    root = temp_root.current() if hasattr(config, "workerinput") else None
    if root is None:
        root = temp_root.create()
        config.stash[_OWN_ROOT] = root
    if config.option.basetemp is None:
        config.option.basetemp = str(root / "t")
    config.stash[_SAVED] = {key: os.environ.get(key) for key in _VARIABLES} | {"tempfile.tempdir": tempfile.tempdir}
    scratch = temp_root.path("tmp")
    os.environ["TMPDIR"] = str(scratch)
    tempfile.tempdir = str(scratch)
    # Parsed profiles are cached by content (services/profiles.py): the run keeps its own cache.
    os.environ["PIPER_YAML_CACHE"] = str(temp_root.path("yaml-cache"))
    # As an ordinary user the template clusters live in the user's cache: the run keeps its own.
    # As root they live in /var/lib/piper-ops/templates, the product's cache, and stay there.
    if not server_account.needed():
        os.environ["PIPER_TEMPLATE_CACHE"] = str(temp_root.path("templates"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A test that failed half-way may leave a server running: stop them all.
    remove_made_servers()


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    root = config.stash.get(_OWN_ROOT, None)
    if root is not None:
        remove_recorded_servers(root)  # those of workers that died before they could stop theirs
    saved = config.stash.get(_SAVED, {})
    for key in _VARIABLES:
        if key in saved:
            if saved[key] is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = saved[key]  # type: ignore[assignment]
    if "tempfile.tempdir" in saved:
        tempfile.tempdir = saved["tempfile.tempdir"]
    if root is not None:
        temp_root.remove(root)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's selection and secrets out of every test."""
    for key in list(os.environ):
        if key.startswith("PIPER_") and key not in KEPT_VARIABLES:
            monkeypatch.delenv(key)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A fresh project in tmp_path, selected through $PIPER_ROOT; its servers are removed after."""
    proj = make_project(tmp_path / "proj")
    monkeypatch.setenv("PIPER_ROOT", str(proj.root))
    yield proj
    remove_servers(proj)


def _fresh(name: str, project: Project) -> tuple[Profile, Project]:
    profile = load_profile(name, project)
    set_up(profile, project)
    return profile, project


@pytest.fixture
def fresh_alpha(project: Project) -> tuple[Profile, Project]:
    """An alpha environment of the test's own (a fresh project, set up and selected), removed after."""
    return _fresh("alpha", project)


@pytest.fixture
def fresh_tester(project: Project) -> tuple[Profile, Project]:
    """A tester environment of the test's own (a fresh project, set up and selected), removed after."""
    return _fresh("tester", project)


@pytest.fixture(scope="session")
def alpha(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Profile, Project]]:
    """One alpha environment set up once for the tests that only read or add to it."""
    proj = make_project(tmp_path_factory.mktemp("alpha") / "proj")
    yield _fresh("alpha", proj)
    remove_servers(proj)


@pytest.fixture
def alpha_env(alpha: tuple[Profile, Project], monkeypatch: pytest.MonkeyPatch) -> tuple[Profile, Project]:
    """The shared alpha environment, selected through $PIPER_ROOT for this test."""
    monkeypatch.setenv("PIPER_ROOT", str(alpha[1].root))
    return alpha


@pytest.fixture(scope="session")
def other_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A second shared project (another laptop, as it were) for tester, dev and production."""
    proj = make_project(tmp_path_factory.mktemp("other") / "proj")
    yield proj
    remove_servers(proj)


@pytest.fixture(scope="session")
def tester(other_project: Project) -> tuple[Profile, Project]:
    """The tester environment, set up once in the second shared project."""
    return _fresh("tester", other_project)


@pytest.fixture(scope="session")
def hosted(other_project: Project, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Profile, Project, dict[str, str]]]:
    """A stand-in for hosted production: the dev server of the second shared project behind a TLS front
    (tests/support/tls_proxy.py, with a self-signed certificate made here), reached through
    $PIPER_PRODUCTION_DATABASE_URL with sslmode=verify-full, and set up as production.

    Yields (production profile, project, {variable: URL}) for the owner's and the application's
    URLs; tests set them in their own environment.
    """
    project = other_project
    profile, _ = _fresh("dev", project)
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
