"""Profiles: the repository's four environments load, and every kind of mistake is one clear error."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.errors import ProfileError
from services.profiles import load_profile, load_profiles, profile_names
from services.project import CODE_ROOT, Project


def test_repository_profiles_match_the_adr() -> None:
    project = Project(CODE_ROOT)
    profiles = {p.name: p for p in load_profiles(project)}
    assert sorted(profiles) == ["alpha", "dev", "production", "tester"]
    assert (profiles["dev"].branch, profiles["dev"].default_user.username) == ("main", "xian")
    assert (profiles["alpha"].branch, profiles["alpha"].default_user.username) == ("production", "alfy")
    assert (profiles["tester"].branch, profiles["tester"].default_user.username) == ("production", "tester123")
    production = profiles["production"]
    assert production.hosted and production.protected
    assert production.database.url_env == "PIPER_PRODUCTION_DATABASE_URL"
    assert production.database.sslmode == "verify-full"
    local = [p for p in profiles.values() if not p.hosted]
    assert len({p.database.port for p in local}) == len({p.database.name for p in local}) == len(local) == 3
    assert len({p.database.data_dir for p in local}) == 3
    for profile in profiles.values():
        assert profile.default_user.email.endswith(".invalid")  # obviously fake addresses only
    # Whole descriptions: an unquoted ` #` would start a YAML comment and cut them short.
    assert [profiles[n].description[-6:] for n in ("dev", "alpha", "tester")] == ["DB #1)", "DB #2)", "DB #3)"]


def _write(tmp_path: Path, name: str, data: object | str) -> Project:
    (tmp_path / "environments").mkdir(exist_ok=True)
    text = data if isinstance(data, str) else yaml.safe_dump(data)
    (tmp_path / "environments" / f"{name}.yaml").write_text(text)
    return Project(tmp_path)


def _valid() -> dict:
    return yaml.safe_load((CODE_ROOT / "environments" / "alpha.yaml").read_text())


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d.update(colour="blue"), "'colour' is unknown"),
        (lambda d: d["database"].update(prot=5432), "'database.prot' is unknown"),
        (lambda d: d.pop("branch"), "'branch' is missing"),
        (lambda d: d["database"].update(port="54322"), "'database.port' must be a whole number"),
        (lambda d: d.update(protected="yes"), "'protected' must be true or false"),
        (lambda d: d["database"].update(port=80), "'database.port' must be a port number"),
        (lambda d: d["database"].update(server="docker"), "'database.server' is 'docker'"),
        (lambda d: d["database"].update(listen_addresses="0.0.0.0"), "'database.listen_addresses' must be loopback"),
        (lambda d: d["database"].update(data_dir="/var/tmp/x"), "'database.data_dir' must be a directory under postgres_data/"),
        (lambda d: d["database"].update(data_dir="."), "'database.data_dir' must be a directory under postgres_data/"),
        (lambda d: d["database"].update(data_dir="postgres_data"), "'database.data_dir' must be a directory under"),
        (lambda d: d["database"].update(data_dir="config/db"), "'database.data_dir' must be a directory under"),
        (lambda d: d.update(name="beta"), "'name' must be 'alpha'"),
        (lambda d: d["setup_steps"].insert(0, {"script": "no_such_script"}), "'setup_steps[0].script' names no script"),
        (lambda d: d["setup_steps"][0].update(args=["{password}"]), "unknown placeholder {password}"),
        (lambda d: d["default_user"].update(email="not-an-email"), "'default_user.email' must be an email"),
        (lambda d: d.update(setup_steps={"script": "x"}), "'setup_steps' must be a list"),
    ],
)
def test_a_bad_profile_is_one_error_naming_file_and_key(tmp_path: Path, change, key: str) -> None:
    data = _valid()
    change(data)
    project = _write(tmp_path, "alpha", data)
    with pytest.raises(ProfileError) as caught:
        load_profile("alpha", project)
    message = str(caught.value)
    assert str(project.environments_dir / "alpha.yaml") in message
    assert key in message
    assert "\n" not in message


def test_broken_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    project = _write(tmp_path, "alpha", "name: alpha\nbranch: [production\n")
    with pytest.raises(ProfileError, match=r"alpha\.yaml: not valid YAML at line \d+"):
        load_profile("alpha", project)


def test_hosted_profile_must_be_protected_and_name_its_url_variable(tmp_path: Path) -> None:
    data = yaml.safe_load((CODE_ROOT / "environments" / "production.yaml").read_text())
    data["protected"] = False
    project = _write(tmp_path, "production", data)
    with pytest.raises(ProfileError, match="'protected' a hosted database must be protected"):
        load_profile("production", project)


def test_unknown_environment_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError, match="unknown environment 'staging'; known environments: alpha, dev, production, tester"):
        load_profile("staging", Project(CODE_ROOT))


def test_profile_names_and_defaults(tmp_path: Path) -> None:
    data = _valid()
    del data["database"]["data_dir"]
    project = _write(tmp_path, "alpha", data)
    assert profile_names(project) == ["alpha"]
    assert load_profile("alpha", project).database.data_dir == "postgres_data/alpha"


def test_profiles_are_cached_by_content_so_commands_skip_the_yaml_parser(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("PIPER_YAML_CACHE", str(cache))
    data = _valid()
    project = _write(tmp_path, "alpha", data)
    assert load_profile("alpha", project).database.port == data["database"]["port"]
    assert len(list(cache.glob("*.json"))) == 1
    probe = ("import sys; from services.profiles import load_profile; from services.project import Project; "
             "from pathlib import Path; "
             f"p = load_profile('alpha', Project(Path({str(tmp_path)!r}))); print(p.database.port, 'yaml' in sys.modules)")
    again = subprocess.run([sys.executable, "-c", probe], cwd=CODE_ROOT, capture_output=True, text=True, check=True,
                           env={**os.environ, "PIPER_YAML_CACHE": str(cache)})
    assert again.stdout.split() == [str(data["database"]["port"]), "False"]  # read from the cache, no YAML parser
    # An edited profile is read afresh: the cache follows the content, never the file name.
    data["database"]["port"] += 7
    _write(tmp_path, "alpha", data)
    assert load_profile("alpha", project).database.port == data["database"]["port"]
    # A damaged cache costs only the parse.
    for entry in cache.glob("*.json"):
        entry.write_text("{not json")
    assert load_profile("alpha", project).database.port == data["database"]["port"]
    # Data JSON cannot hold exactly is never cached, and the profile is still checked.
    _write(tmp_path, "alpha", {**data, "since": datetime.date(2026, 11, 28)})
    before = {p.name for p in cache.glob("*.json")}
    with pytest.raises(ProfileError, match="'since' is unknown"):
        load_profile("alpha", project)
    assert {p.name for p in cache.glob("*.json")} == before


def test_a_cache_someone_else_can_write_is_ignored(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("PIPER_YAML_CACHE", str(cache))
    data = _valid()
    project = _write(tmp_path, "alpha", data)
    load_profile("alpha", project)
    (entry,) = cache.glob("*.json")
    forged = json.loads(entry.read_text())
    forged["database"]["port"] = 1
    entry.write_text(json.dumps(forged))
    entry.chmod(0o666)  # writable by anyone: not trusted, the YAML is read again and the entry replaced
    assert load_profile("alpha", project).database.port == data["database"]["port"]
    assert json.loads(entry.read_text()) == data and entry.stat().st_mode & 0o777 == 0o600
    entry.write_text(json.dumps(forged))
    cache.chmod(0o777)  # a folder others can write into: nothing in it is trusted, nothing written
    assert load_profile("alpha", project).database.port == data["database"]["port"]
    assert json.loads(entry.read_text()) == forged


@pytest.mark.parametrize(("text", "message"), [
    ("name: alpha\nname: alpha\n", "key 'name' is given twice"),
    ("database: {name: a}\ndatabase: {name: b}\n", "key 'database' is given twice"),
    ("a: &x [1, 2]\nb: *x\n", "uses a YAML anchor or alias"),
])
def test_yaml_that_hides_or_multiplies_values_is_refused(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "alpha.yaml").write_text(text)
    with pytest.raises(ProfileError, match=message):
        load_profile("alpha", Project(tmp_path))


def test_a_profile_that_is_no_regular_file_is_refused_at_once(tmp_path: Path) -> None:
    import os

    (tmp_path / "environments").mkdir()
    os.mkfifo(tmp_path / "environments" / "alpha.yaml")
    with pytest.raises(ProfileError, match="is not a regular file"):
        load_profile("alpha", Project(tmp_path))
