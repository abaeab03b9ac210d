"""services/environments/status.py: every environment at a glance, decided without changing anything."""

from __future__ import annotations

import os

from services import migrations
from services.environments import status as env_status
from services.postgres import servers
from services.project import CODE_ROOT, Project
from tests.support.databases import connect, query

HEAD = migrations.head_revision(Project(CODE_ROOT))


def test_status_reports_every_environment(alpha_env) -> None:
    profile, project = alpha_env
    rows = {row.name: row for row in env_status.environment_statuses(project)}
    assert sorted(rows) == ["alpha", "dev", "production", "tester"]
    alpha = rows["alpha"]
    users = query(profile, project, "SELECT count(*) FROM alpha_users")[0][0]
    assert users >= 1
    assert (alpha.running, alpha.stamp, alpha.revision, alpha.head, alpha.users) == (True, "alpha", HEAD, HEAD, users)
    assert alpha.selected and alpha.branch_expected == "production"
    assert not rows["dev"].initialized and not rows["dev"].running
    assert rows["production"].server == "hosted" and rows["production"].problem is None
    assert rows["production"].location == "not configured ($PIPER_PRODUCTION_DATABASE_URL is not set)"
    assert os.environ.get("PIPER_PRODUCTION_DATABASE_URL") is None


def test_a_stopped_server_and_a_foreign_stamp_are_reported_not_repaired(fresh_tester) -> None:
    profile, project = fresh_tester
    with connect(profile, project) as conn:
        conn.execute("UPDATE piper_metadata SET value = 'alpha' WHERE key = 'environment'")
        conn.commit()
    tester = {row.name: row for row in env_status.environment_statuses(project)}["tester"]
    assert (tester.running, tester.stamp, tester.problem) == (True, "alpha", "database is stamped for environment 'alpha'")
    assert query(profile, project, "SELECT value FROM piper_metadata") == [("alpha",)]
    server = servers.locate(profile, project)
    servers.stop(server)
    tester = {row.name: row for row in env_status.environment_statuses(project)}["tester"]
    assert tester.initialized and not tester.running and tester.pid is None
    assert (tester.stamp, tester.revision, tester.users) == (None, None, None)
    assert not servers.state(server).running  # status never starts a server
