"""Where a piper-ops checkout keeps things, and which environment a command acts on."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from services import envfile
from services.errors import UsageError

#: The checkout that holds this code: migrations and scripts always come from here.
CODE_ROOT = Path(__file__).resolve().parent.parent

#: Set to use another project directory (profiles, data, .env, config) than the code's checkout.
ROOT_VARIABLE = "PIPER_ROOT"
ENV_VARIABLE = "PIPER_ENV"


@dataclass(frozen=True)
class Project:
    """The directories and files of one piper-ops project."""

    root: Path

    @property
    def environments_dir(self) -> Path:
        return self.root / "environments"

    @property
    def data_root(self) -> Path:
        return self.root / "postgres_data"

    @property
    def env_file(self) -> Path:
        return self.root / ".env"

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def migrations_dir(self) -> Path:
        return CODE_ROOT / "migrations"

    @property
    def scripts_dir(self) -> Path:
        return CODE_ROOT / "scripts"


def current_project() -> Project:
    """Return the project named by $PIPER_ROOT, else the checkout this code lives in."""
    root = os.environ.get(ROOT_VARIABLE)
    return Project(Path(root).resolve() if root else CODE_ROOT)


def select_environment(explicit: str | None, project: Project, known: list[str]) -> str:
    """Return the environment to act on: --env, then $PIPER_ENV, then PIPER_ENV in .env.

    With none of them set, raise an error that lists the known profiles: no command may guess.
    """
    for candidate in (explicit, os.environ.get(ENV_VARIABLE), envfile.read(project.env_file).get(ENV_VARIABLE)):
        if candidate:
            return candidate
    names = ", ".join(known) if known else "none found"
    raise UsageError(
        f"no environment selected; pass --env NAME, set {ENV_VARIABLE}, or run `invoke setup --env NAME` "
        f"(profiles: {names})"
    )
