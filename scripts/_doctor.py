"""What `invoke doctor` does: run the checks of services/doctor, print each with its fix, write the report.

Exit 0 when every check passes (warnings included), 1 when one fails, 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services import doctor
from services.doctor import report
from services.project import current_project

_MARK = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def run_doctor(args: argparse.Namespace) -> int:
    project = current_project()
    if args.report:
        report.check_report_path(Path(args.report).absolute())  # a report it cannot write stops it before the checks
    result = doctor.run_doctor(project, args.env)
    if args.json:
        print(json.dumps(report.document(result), indent=2))
    else:
        _print(result)
    if args.report:
        path = Path(args.report).absolute()
        report.write_report(result, project, path)
        print(f"doctor: report written to {path} (redacted: no passwords, home as ~, no account or host names); "
              "paste it into your bug report", file=sys.stderr if args.json else sys.stdout)
    return 1 if result.failed else 0


def _print(result: doctor.DoctorResult) -> None:
    if result.environment:
        print(f"doctor: the machine, this checkout and environment {result.environment} ({result.selected_by})")
    else:
        print("doctor: the machine, this checkout and each environment's basics (no environment selected; "
              "--env NAME checks one in full)")
    width = max((len(c.name) for c in result.checks), default=0)
    scope = None
    for check in result.checks:
        if check.scope != scope:
            scope = check.scope
            print(f"{scope}:")
        print(f"  {_MARK[check.status]}  {check.name.ljust(width)}  {check.detail}")
        if check.fix and check.status != "ok":
            print(f"        {''.ljust(width)}  fix: {check.fix}")
    failed, warned, passed = result.count("fail"), result.count("warn"), result.count("ok")
    verdict = ("something needs fixing (see fix: above)" if failed
               else "all is well" + (" (see the warnings)" if warned else ""))
    print(f"doctor: {failed} failed, {warned} warnings, {passed} ok: {verdict}")
