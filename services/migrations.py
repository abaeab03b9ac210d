"""The project's migration head, cached: importing Alembic costs more than a warm setup's other work.

Alembic itself is driven from services/database/schema.py on the project's migrations/.
"""

from __future__ import annotations

import hashlib
import json

from services.database import schema
from services.files import write_atomic
from services.project import Project

_HEAD_CACHE = ".migrations-head.json"


def head_revision(project: Project, *, refresh: bool = True) -> str:
    """Return the head revision of the project's migrations/.

    The head is cached in postgres_data/ against a hash of the revision files and recomputed
    whenever one changes; with refresh=False a stale cache is not rewritten (for commands that
    write nothing, such as doctor).
    """
    fingerprint = _fingerprint(project)
    cache = project.data_root / _HEAD_CACHE
    try:
        cached = json.loads(cache.read_text())
        if cached.get("fingerprint") == fingerprint:
            return str(cached["head"])
    except (OSError, ValueError, KeyError):
        pass
    head = schema.head(project.migrations_dir)
    if refresh and project.data_root.is_dir():
        write_atomic(cache, json.dumps({"fingerprint": fingerprint, "head": head}))
    return head


def _fingerprint(project: Project) -> str:
    digest = hashlib.sha256()
    for path in sorted((project.migrations_dir / "versions").glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
