"""services/migrations.py: the project's migration head, cached against the revision files."""

from __future__ import annotations

from services import migrations
from services.database import schema
from services.project import Project


def test_head_is_cached_against_the_revision_files(project: Project) -> None:
    project.data_root.mkdir()
    head = migrations.head_revision(project)
    assert head == schema.head(project.migrations_dir)
    cache = project.data_root / ".migrations-head.json"
    assert cache.exists() and head in cache.read_text()
    cache.write_text('{"fingerprint": "stale", "head": "bogus"}')
    assert migrations.head_revision(project) == head


def test_a_project_without_data_writes_no_cache(project: Project) -> None:
    assert not project.data_root.exists()
    assert migrations.head_revision(project) == schema.head(project.migrations_dir)
    assert not project.data_root.exists()
