"""Environment profiles: `environments/<name>.yaml`, loaded into frozen, validated objects.

This is the only module that reads the profiles. A broken file, an unknown key, a missing field or
a value of the wrong type is one `ProfileError` naming the file and the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import string
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from services import envfile, identifiers
from services.errors import ProfileError, UsageError
from services.files import read_regular_file, write_atomic
from services.project import Project
from services.rotation import Rotation, check_policy

SERVER_KINDS = ("embedded", "system", "hosted")
#: A profile is a page of YAML; a bigger file is not one (and every read is bounded).
MAX_PROFILE_BYTES = 1 << 20
BRANCH_POLICIES = ("warn", "refuse")
SSL_MODES = ("require", "verify-ca", "verify-full")
LOOPBACK_ADDRESSES = ("", "127.0.0.1", "::1", "localhost")
#: Placeholders a setup step's arguments may use; anything else in braces is an error.
STEP_PLACEHOLDERS = ("username", "email", "data_file")
#: The machine-local settings a user may override without editing a tracked profile, as
#: `PIPER_<ENV>_<NAME>` in the git-ignored `.env` or the shell (the shell wins), like Rails'
#: database.yml + DATABASE_URL: the profile says what the environment is, the override where it
#: lives on this machine.
LOCAL_OVERRIDES = {"PORT": "port", "DATA_DIR": "data_dir", "SERVER": "server", "BIN_DIR": "bin_dir"}


@dataclass(frozen=True)
class DefaultUser:
    username: str
    email: str
    display_name: str = ""


@dataclass(frozen=True)
class Database:
    name: str
    server: str = "embedded"
    port: int = 0
    data_dir: str = ""
    bin_dir: str | None = None
    listen_addresses: str = "127.0.0.1"
    url_env: str | None = None
    app_url_env: str | None = None
    sslmode: str = "verify-full"
    sslrootcert: str | None = None


@dataclass(frozen=True)
class SetupStep:
    """A script that `invoke setup` runs after migrating, with its arguments.

    An optional step is skipped when a placeholder it uses has no value (say, no --data-file).
    """

    script: str
    args: tuple[str, ...] = ()
    optional: bool = False


@dataclass(frozen=True)
class PersonalData:
    data_file: str | None = None


@dataclass(frozen=True)
class AuditTerm:
    term: str
    kind: str = "name"
    case_sensitive: bool = False


@dataclass(frozen=True)
class Audit:
    terms: tuple[AuditTerm, ...] = ()


@dataclass(frozen=True)
class Override:
    """A machine-local setting that replaced a profile's value: `database.port` = "5499" from where."""

    key: str
    value: str
    variable: str
    where: str

    def describe(self) -> str:
        return f"{self.key}={self.value} ({self.variable} in {self.where})"


@dataclass(frozen=True)
class Profile:
    """One environment: its branch, its database and what `invoke setup` does for it."""

    name: str
    branch: str
    default_user: DefaultUser
    database: Database
    description: str = ""
    branch_policy: str = "warn"
    protected: bool = False
    setup_steps: tuple[SetupStep, ...] = ()
    personal_data: PersonalData = field(default_factory=PersonalData)
    backups: Rotation = field(default_factory=Rotation)
    audit: Audit = field(default_factory=Audit)
    #: The YAML file this profile came from (not a YAML key).
    source: Path = field(default=Path(), compare=False)
    #: The local overrides applied over the YAML (not YAML keys), each as (key, value, where).
    overrides: tuple[Override, ...] = field(default=(), compare=False)

    @property
    def hosted(self) -> bool:
        return self.database.server == "hosted"

    def data_path(self, project: Project) -> Path:
        """Return the absolute data directory of this environment's local server."""
        return (project.root / self.database.data_dir).resolve()


def profile_names(project: Project) -> list[str]:
    """Return the names of the profiles in environments/, sorted."""
    return sorted(p.stem for p in project.environments_dir.glob("*.yaml"))


def override_variable(environment: str, name: str) -> str:
    """Return the variable that overrides a local setting of an environment: PIPER_ALPHA_PORT."""
    return f"PIPER_{environment.upper()}_{name}"


def load_profile(name: str, project: Project) -> Profile:
    """Return the validated profile `environments/<name>.yaml`, with this machine's overrides."""
    known = profile_names(project)
    if name not in known:
        listing = ", ".join(known) if known else f"none in {project.environments_dir}"
        raise ProfileError(f"unknown environment {name!r}; known environments: {listing}")
    return _parse(project.environments_dir / f"{name}.yaml", project, _local_settings(project))


def load_profiles(project: Project, *, overrides: bool = True) -> list[Profile]:
    """Return every profile of the project, sorted by name, with this machine's overrides.

    `overrides=False` gives the profiles as tracked, ignoring every PIPER_<ENV>_* override of
    `.env` and the shell (what `invoke docs` documents for every machine).
    """
    local = _local_settings(project) if overrides else {}
    return [_parse(project.environments_dir / f"{n}.yaml", project, local) for n in profile_names(project)]


def _local_settings(project: Project) -> dict[str, tuple[str, str]]:
    """Return the PIPER_* variables that may hold overrides, each with where it was set (.env or the shell)."""
    found = {key: (value, project.env_file.name) for key, value in envfile.read(project.env_file).items()
             if key.startswith("PIPER_")}
    found.update({key: (value, "the shell") for key, value in os.environ.items() if key.startswith("PIPER_")})
    return found


def check_distinct(profile: Profile, project: Project) -> None:
    """Refuse a local profile that shares its data directory or its port with another profile."""
    if profile.hosted:
        return
    for other in load_profiles(project):
        if other.name == profile.name or other.hosted:
            continue
        for key, same in (("database.data_dir", other.data_path(project) == profile.data_path(project)),
                          ("database.port", other.database.port == profile.database.port)):
            if same:
                raise ProfileError(f"{_origin(profile, key)}: key '{key}' is the same as environment {other.name!r} has "
                                   f"({_origin(other, key)}); give each environment its own")


def _origin(profile: Profile, key: str) -> str:
    """Return where a profile's value of key comes from: its YAML file, or the override that replaced it."""
    for override in profile.overrides:
        if override.key == key:
            return f"{override.variable} in {override.where}"
    return str(profile.source)


def _parse(path: Path, project: Project, local: dict[str, tuple[str, str]]) -> Profile:
    try:
        raw = _load_yaml(read_regular_file(path, MAX_PROFILE_BYTES, what="profile"), path)
    except ProfileError:
        raise
    except UsageError as exc:
        raise ProfileError(str(exc)) from None
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: must be a mapping of keys to values")
    check = _Checker(path)
    profile = check.build(Profile, raw, "")
    profile = _with_defaults(profile, path, project)
    _validate(profile, check, project)
    return _with_overrides(profile, project, local)


def _with_overrides(profile: Profile, project: Project, local: dict[str, tuple[str, str]]) -> Profile:
    """Apply the environment's local overrides and validate the result as the profile itself is.

    An override that is wrong is an error naming the variable and where it was set, never the
    tracked profile (which is fine).
    """
    applied: list[Override] = []
    changes: dict[str, Any] = {}
    for name, key in LOCAL_OVERRIDES.items():
        variable = override_variable(profile.name, name)
        if variable not in local:
            continue
        value, where = local[variable]
        if profile.hosted:
            raise ProfileError(f"{variable} (in {where}) overrides database.{key}, but environment {profile.name!r} is "
                               "hosted and has no local server; remove it")
        if key == "server" and value not in ("embedded", "system"):
            raise ProfileError(f"{variable} (in {where}) must be embedded or system, not {value!r}; fix or remove it")
        if key == "port":
            if not re.fullmatch(r"[0-9]{1,5}", value):
                raise ProfileError(f"{variable} (in {where}) must be a port number between 1024 and 65535, not "
                                   f"{value!r}; fix or remove it")
            changes[key] = int(value)
        else:
            changes[key] = value or None if key == "bin_dir" else value
        applied.append(Override(f"database.{key}", value, variable, where))
    if not applied:
        return profile
    overridden = replace(profile, database=replace(profile.database, **changes), overrides=tuple(applied))
    _validate(overridden, _OverrideChecker(profile.source, {o.key: o for o in applied}), project)
    return overridden


def _load_yaml(text: bytes, path: Path) -> Any:
    """Return the data of a YAML document, through a cache of plain JSON keyed by its SHA-256.

    Importing the YAML parser costs more than everything else a command does to load its profile
    (15-20 ms, most of it compiling the parser's regular expressions; docs/BENCHMARKS.md), and
    profiles rarely change. The cache is keyed by content, so an edited profile is parsed afresh;
    data that JSON cannot hold exactly (dates, non-text keys) is never cached; a damaged or
    unwritable cache only costs the parse. Only a cache folder and files that belong to the
    current user and that nobody else can write are used (under `sudo` with the caller's HOME,
    root ignores the caller's cache). Validation runs on the data either way.
    """
    folder = _yaml_cache()
    cache = folder / f"{hashlib.sha256(text).hexdigest()}.json"
    cached = _read_private(folder, cache)
    if cached is not None:
        try:
            return json.loads(cached)
        except ValueError:
            pass
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        _check_plain_yaml(text, path, loader)
        raw = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ProfileError(f"{path}: not valid YAML{where}; fix the syntax") from None
    try:
        encoded = json.dumps(raw, ensure_ascii=False, allow_nan=False)
        if json.loads(encoded) == raw:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            if _private(folder):
                write_atomic(cache, encoded, mode=0o600)
    except (TypeError, ValueError, OSError):
        pass  # not plain JSON, or nowhere to write: parse it every time
    return raw


def _check_plain_yaml(text: bytes, path: Path, loader: Any) -> None:
    """Refuse what YAML allows but a profile never needs: anchors and aliases (`&a`, `*a`: a few
    lines of them expand to billions of values) and a key given twice (YAML keeps the last one
    silently, so a second `database:` block would win unseen)."""
    import yaml

    for token in yaml.scan(text, Loader=loader):
        if isinstance(token, (yaml.AnchorToken, yaml.AliasToken)):
            raise ProfileError(f"{path}: uses a YAML anchor or alias at line {token.start_mark.line + 1}; "
                               "write the values out")
    stack = [yaml.compose(text, Loader=loader)]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise ProfileError(f"{path}: key '{key.value}' is given twice (line {key.start_mark.line + 1}); "
                                           "keep one")
                    seen.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _yaml_cache() -> Path:
    configured = os.environ.get("PIPER_YAML_CACHE")
    if configured:
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "piper-ops" / "yaml"


def _private(path: Path, info: os.stat_result | None = None) -> bool:
    """Return True when path (not a link) belongs to the current user and only they can write it."""
    try:
        info = info or os.lstat(path)
    except OSError:
        return False
    return (hasattr(os, "geteuid") and info.st_uid == os.geteuid() and not stat.S_ISLNK(info.st_mode)
            and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _read_private(folder: Path, file: Path) -> bytes | None:
    """Return the file's bytes if it and its folder are private to the current user, else None."""
    if not _private(folder):
        return None
    try:
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        return handle.read() if _private(file, os.fstat(fd)) else None


def _with_defaults(profile: Profile, path: Path, project: Project) -> Profile:
    database = profile.database
    if not database.data_dir and database.server != "hosted":
        database = replace(database, data_dir=f"postgres_data/{profile.name}")
    return replace(profile, database=database, source=path)


def _validate(profile: Profile, check: _Checker, project: Project) -> None:
    path = check.path
    if profile.name != path.stem:
        check.fail("name", f"must be {path.stem!r}, the file's name")
    if not identifiers.is_environment_name(profile.name):
        check.fail("name", "must be lower-case letters, digits and underscores")
    check.choice("branch_policy", profile.branch_policy, BRANCH_POLICIES)
    db = profile.database
    check.choice("database.server", db.server, SERVER_KINDS)
    if not identifiers.is_sql_name(db.name):
        check.fail("database.name", "must be a lower-case SQL identifier (letters, digits, _)")
    if db.server == "hosted":
        if not db.url_env:
            check.fail("database.url_env", "a hosted database needs the name of the variable holding its URL")
        check.choice("database.sslmode", db.sslmode, SSL_MODES)
        if not profile.protected:
            check.fail("protected", "a hosted database must be protected: true")
    else:
        if not 1024 <= db.port <= 65535:
            check.fail("database.port", "must be a port number between 1024 and 65535")
        if db.listen_addresses not in LOOPBACK_ADDRESSES:
            check.fail("database.listen_addresses", "must be loopback only: '127.0.0.1', '::1', 'localhost' or ''")
        if db.server == "system" and not db.bin_dir:
            check.fail("database.bin_dir", "a system server needs the directory of its binaries (pg_ctl, initdb)")
        parts = Path(db.data_dir).parts
        # Teardown deletes this directory: it must be one of its own, under postgres_data/.
        if Path(db.data_dir).is_absolute() or ".." in parts or len(parts) < 2 or parts[0] != "postgres_data":
            check.fail("database.data_dir", "must be a directory under postgres_data/, such as postgres_data/NAME")
    user = profile.default_user
    if not identifiers.is_username(user.username):
        check.fail("default_user.username", f"must be {identifiers.USERNAME_RULE}")
    if not identifiers.is_email(user.email):
        check.fail("default_user.email", "must be an email address")
    for index, step in enumerate(profile.setup_steps):
        key = f"setup_steps[{index}]"
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", step.script) or not (project.scripts_dir / f"{step.script}.py").is_file():
            check.fail(f"{key}.script", f"names no script in scripts/ ({step.script!r})")
        for arg in step.args:
            for _, placeholder, _, _ in string.Formatter().parse(arg):
                if placeholder is not None and placeholder not in STEP_PLACEHOLDERS:
                    check.fail(f"{key}.args", f"unknown placeholder {{{placeholder}}}; use {', '.join(STEP_PLACEHOLDERS)}")
    check_policy(profile.backups, check.fail, hosted=profile.hosted)  # services/rotation.py


class _Checker:
    """Builds dataclasses from YAML mappings, naming the file and key of anything wrong."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> None:
        raise ProfileError(f"{self.path}: key '{key}' {problem}")

    def choice(self, key: str, value: str, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            self.fail(key, f"is {value!r}; use one of: {', '.join(allowed)}")

    def build(self, cls: type, raw: Any, prefix: str) -> Any:
        if not isinstance(raw, dict):
            self.fail(prefix.rstrip("."), "must be a mapping")
        spec = {f.name: f for f in fields(cls) if f.name not in ("source", "overrides")}
        for key in raw:
            if key not in spec:
                self.fail(f"{prefix}{key}", f"is unknown; known keys: {', '.join(spec)}")
        values: dict[str, Any] = {}
        for name, f in spec.items():
            key = f"{prefix}{name}"
            if name not in raw:
                if f.default is MISSING and f.default_factory is MISSING:
                    self.fail(key, "is missing")
                continue
            values[name] = self._convert(_TYPES[(cls.__name__, name)], raw[name], key)
        return cls(**values)

    def _convert(self, kind: Any, value: Any, key: str) -> Any:
        if isinstance(kind, tuple):  # ("list", element kind)
            if not isinstance(value, list):
                self.fail(key, "must be a list")
            return tuple(self._convert(kind[1], item, f"{key}[{i}]") for i, item in enumerate(value))
        if isinstance(kind, type) and hasattr(kind, "__dataclass_fields__"):
            return self.build(kind, value, f"{key}.")
        if kind == "optional_str":
            if value is None:
                return None
            kind = str
        if kind == "backup_policy":  # YAML 1.1 reads `auto: off` as false (and `on` as true)
            value, kind = ("off" if value is False else value), str
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            self.fail(key, f"must be {_TYPE_NAMES[kind]}, not {type(value).__name__} ({value!r})")
        return value


class _OverrideChecker(_Checker):
    """Names the override, not the profile, when a value only an override brought in is wrong."""

    def __init__(self, path: Path, overrides: dict[str, Override]) -> None:
        super().__init__(path)
        self.overrides = overrides

    def fail(self, key: str, problem: str) -> None:
        found = self.overrides.get(key)
        if found is None:  # a rule between keys (say, a system server needs bin_dir) that the override broke
            named = ", ".join(f"{o.variable} (in {o.where})" for o in self.overrides.values())
            raise ProfileError(f"{self.path}: key '{key}' {problem}, with the overrides {named}; fix them or the profile")
        raise ProfileError(f"{found.variable} (in {found.where}) overrides {key}: it {problem}; fix or remove it")


_TYPE_NAMES = {str: "text", int: "a whole number", bool: "true or false"}

# The YAML type of every key, by (class, field). Kept explicit so that a typo in a dataclass
# annotation cannot silently widen what a profile accepts.
_TYPES: dict[tuple[str, str], Any] = {
    ("Profile", "name"): str,
    ("Profile", "description"): str,
    ("Profile", "branch"): str,
    ("Profile", "branch_policy"): str,
    ("Profile", "protected"): bool,
    ("Profile", "default_user"): DefaultUser,
    ("Profile", "database"): Database,
    ("Profile", "setup_steps"): ("list", SetupStep),
    ("Profile", "personal_data"): PersonalData,
    ("Profile", "backups"): Rotation,
    ("Profile", "audit"): Audit,
    ("DefaultUser", "username"): str,
    ("DefaultUser", "email"): str,
    ("DefaultUser", "display_name"): str,
    ("Database", "name"): str,
    ("Database", "server"): str,
    ("Database", "port"): int,
    ("Database", "data_dir"): str,
    ("Database", "bin_dir"): "optional_str",
    ("Database", "listen_addresses"): str,
    ("Database", "url_env"): "optional_str",
    ("Database", "app_url_env"): "optional_str",
    ("Database", "sslmode"): str,
    ("Database", "sslrootcert"): "optional_str",
    ("SetupStep", "script"): str,
    ("SetupStep", "args"): ("list", str),
    ("SetupStep", "optional"): bool,
    ("PersonalData", "data_file"): "optional_str",
    ("Rotation", "keep_last"): int,
    ("Rotation", "keep_daily"): int,
    ("Rotation", "keep_weekly"): int,
    ("Rotation", "auto"): "backup_policy",
    ("Audit", "terms"): ("list", AuditTerm),
    ("AuditTerm", "term"): str,
    ("AuditTerm", "kind"): str,
    ("AuditTerm", "case_sensitive"): bool,
}
