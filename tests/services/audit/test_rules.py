"""services/audit/rules.py: a bad rule stops the audit before it runs."""

from __future__ import annotations

import pytest

from services import audit
from services.errors import AuditError
from services.project import Project
from tests.services.audit import FAKE_PROFILE


def test_bad_rule_cannot_run(project: Project) -> None:
    (project.environments_dir / "fake.yaml").write_text(FAKE_PROFILE + "    - {term: '--', kind: name}\n")
    with pytest.raises(AuditError, match="no letters"):
        audit.load_rules(project)
    (project.environments_dir / "fake.yaml").write_text(FAKE_PROFILE + "    - {term: zz, kind: shoe-size}\n")
    with pytest.raises(AuditError, match="kind 'shoe-size' is unknown"):
        audit.load_rules(project)
