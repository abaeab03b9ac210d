"""The doctor's report: a versioned document (format "piper-doctor-report", version 1) and its
redacted Markdown form, which a tester pastes into a bug and a later tool reads back.

The Markdown holds a readable summary and table, then the same document as one fenced JSON block
(`parse_report` reads either that block or a bare JSON document). Redacted means: no password or
URL secret of `.env` or the shell, the home directory shown as `~`, this account's name and the
host's name replaced, and the profiles' personal-data audit terms masked, wherever they appear.

Version 1 fields (new fields may be added within a version; a changed meaning is a new version):
`format`, `version`, `generated_at` (UTC, ISO 8601), `redacted`, `machine` {system, machine,
python, root}, `environment` (checked in full, or null), `selected_by`, `environments` (profile
names), `head` (migrations' head revision), `summary` {ok, warn, fail, result}, `checks` [{scope,
name, status, detail, fix, data}].
"""

from __future__ import annotations

import json
import os
import pwd
import re
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services import credentials
from services.doctor import DoctorResult
from services.doctor.machine import machine_facts
from services.errors import UsageError
from services.files import write_atomic
from services.profiles import Profile, load_profiles
from services.project import Project

FORMAT, VERSION = "piper-doctor-report", 1
_BLOCK = re.compile(r"^```json\n(?P<body>\{.*?\})\n```$", re.S | re.M)
_SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|_URL$|DATABASE_URL", re.I)
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]+)(@)")


class Redactor:
    """Replaces what must not leave the machine in a report with placeholders."""

    def __init__(self, project: Project, profiles: list[Profile] | None = None) -> None:
        secrets = [v for k, v in credentials.known_secrets(project).items() if _SECRET_KEY.search(k) and len(v) >= 4]
        self._secrets = sorted(set(secrets), key=len, reverse=True)
        homes = {os.path.expanduser("~"), os.environ.get("HOME", "")}
        names = set()
        try:
            entry = pwd.getpwuid(os.geteuid())
            homes.add(entry.pw_dir)
            names.add(entry.pw_name)
        except KeyError:
            pass
        for variable in ("USER", "LOGNAME", "SUDO_USER"):
            if os.environ.get(variable):
                names.add(os.environ[variable])
        homes = {h.rstrip("/") for h in homes} - {""}
        self._homes = sorted(homes, key=len, reverse=True)
        # A system account's name says nothing of a person ("root", the server's "piper-pg").
        self._names = sorted((n for n in names if n and n not in ("root", "piper-pg")), key=len, reverse=True)
        host = socket.gethostname().split(".")[0]
        self._host = host if len(host) >= 3 and host != "localhost" else None
        self._terms: list[re.Pattern[str]] = []
        for profile in profiles or []:
            for term in profile.audit.terms:
                flags = 0 if term.case_sensitive else re.I
                self._terms.append(re.compile(rf"(?<![\w]){re.escape(term.term)}(?![\w])", flags))

    def text(self, value: str) -> str:
        """Return value with every secret, home, account name, host name and audit term replaced."""
        value = _URL_PASSWORD.sub(r"\1***\3", value)
        for secret in self._secrets:
            value = value.replace(secret, "***")
        for home in self._homes:
            value = re.sub(rf"{re.escape(home)}(?=/|\b|$)", "~", value)
        for name in self._names:
            value = re.sub(rf"(?<![\w.-]){re.escape(name)}(?![\w-])", "<user>", value)
        if self._host:
            value = re.sub(rf"(?<![\w.-]){re.escape(self._host)}(?![\w-])", "<host>", value)
        for term in self._terms:
            value = term.sub("<redacted>", value)
        return value

    def value(self, value: Any) -> Any:
        """Redact every string inside a JSON value."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        return value


def document(result: DoctorResult, *, redactor: Redactor | None = None, when: datetime | None = None) -> dict[str, Any]:
    """Return the report document (version 1), redacted when a redactor is given."""
    doc: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "generated_at": (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "redacted": redactor is not None, "machine": machine_facts(),
        "environment": result.environment, "selected_by": result.selected_by,
        "environments": list(result.environments), "head": result.head,
        "summary": {"ok": result.count("ok"), "warn": result.count("warn"), "fail": result.count("fail"),
                    "result": "fail" if result.failed else "ok"},
        "checks": [{"scope": c.scope, "name": c.name, "status": c.status, "detail": c.detail, "fix": c.fix,
                    "data": c.data} for c in result.checks],
    }
    return redactor.value(doc) if redactor is not None else doc


def markdown(doc: dict[str, Any]) -> str:
    """Return the report as Markdown: a summary, a table of the checks, then the document as a JSON block."""
    summary, facts = doc["summary"], doc["machine"]
    what = f"environment `{doc['environment']}`" if doc["environment"] else "no environment selected (basics of each)"
    lines = [
        "# piper-ops doctor report", "",
        f"**{summary['result'].upper()}**: {summary['fail']} failed, {summary['warn']} warnings, {summary['ok']} ok; "
        f"{what}; {facts['system']} {facts['machine']}, Python {facts['python']}"
        f"{', as root' if facts['root'] else ''}.", "",
        f"Generated {doc['generated_at']} by `invoke doctor --report`"
        + (" (redacted: no passwords; home shown as `~`, account and host names replaced)."
           if doc["redacted"] else "."),
        "", "| scope | check | result | detail | fix |", "|---|---|---|---|---|",
    ]
    for check in doc["checks"]:
        cells = [check["scope"], check["name"], check["status"], check["detail"], check["fix"] or ""]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", f"<details><summary>Machine-readable ({FORMAT} version {VERSION})</summary>", "", "```json",
              json.dumps(doc, indent=2, ensure_ascii=False), "```", "", "</details>", ""]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def parse_report(text: str) -> dict[str, Any]:
    """Return the document of a report: its Markdown's JSON block, or a bare JSON document.

    Raise UsageError when it is not a piper-doctor-report this version of piper-ops can read.
    """
    stripped = text.strip()
    match = _BLOCK.search(text)
    body = stripped if stripped.startswith("{") else (match["body"] if match else None)
    if body is None:
        raise UsageError("not a doctor report: no JSON block found; pass a file `invoke doctor --report` wrote")
    try:
        doc = json.loads(body)
    except ValueError:
        raise UsageError("not a doctor report: its JSON block is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UsageError(f"not a doctor report: its format is not {FORMAT!r}")
    if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
        raise UsageError(f"a doctor report of version {doc.get('version')!r}; this piper-ops reads up to version "
                         f"{VERSION}: update it")
    return doc


def write_report(result: DoctorResult, project: Project, path: Path) -> dict[str, Any]:
    """Write the redacted Markdown report to path atomically (replacing an earlier report); return its document."""
    check_report_path(path)
    try:
        profiles = load_profiles(project)
    except UsageError:
        profiles = []
    doc = document(result, redactor=Redactor(project, profiles))
    write_atomic(path, markdown(doc), mode=0o644)
    return doc


def check_report_path(path: Path) -> None:
    """Refuse, before any check runs, a report path that cannot take a new regular file."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a directory; name the report file, e.g. {path / 'doctor-report.md'}")
    if not path.parent.is_dir():
        raise UsageError(f"{path.parent} does not exist; create it or name a file in an existing directory")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        # The report replaces an earlier one by a rename: never a device (/dev/null, as root) or a link.
        raise UsageError(f"{path} is not a regular file (a device, FIFO or link); name a new file or an earlier report")
