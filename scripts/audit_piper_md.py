"""Audit config/PIPER.md and its backups (or more) for personal data; exit 0 clean, 1 found, 2 could not run.

    python scripts/audit_piper_md.py [--all | --history | --staged] [--format text|json|sarif] [--workers N] [PATH ...]
    piper-audit-hook [--rules FILE] [--terms T1,T2] [PATH ...]    # the pre-commit hook (console script)
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a command
    gc.disable()  # start-up only makes objects that live to the end; _cli.run_command turns it back on
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import _cli, _commands  # noqa: E402
from services import audit  # noqa: E402
from services.errors import AuditError, PiperError  # noqa: E402
from services.project import Project, current_project  # noqa: E402


def run(args: argparse.Namespace) -> int:
    if args.paths and (args.all or args.history or args.staged) and not args.hook:
        raise AuditError("give PATHs or one of --all/--history/--staged, not both; see --help")
    # The hook audits the repository being committed, wherever this code is installed (pre-commit's
    # own environment): its root is the git top level of the current directory, never $PIPER_ROOT.
    project = Project(audit.git_root(Path.cwd())) if args.hook else current_project()
    try:
        terms = audit.parse_terms(args.terms) if args.terms else ()
        rules = audit.load_rules(project, profiles=not args.hook or audit.has_profiles(project),
                                 rules_file=Path(args.rules) if args.rules else None, terms=terms)
        chosen = Path(args.allowlist) if args.allowlist else project.root / audit.ALLOWLIST_PATH
        allowlist = audit.load_allowlist(chosen, required=args.allowlist is not None)
        if args.hook:
            targets = audit.hook_targets(project, rules, args.paths)
        elif args.paths:
            targets = audit.path_targets(project, args.paths)
        elif args.history:
            targets = audit.history_targets(project, rules, args.all)
        elif args.staged:
            targets = audit.staged_targets(project, rules, args.all)
        elif args.all:
            targets = audit.tracked_targets(project, rules)
        else:
            targets = audit.piper_md_targets(project)
        # pre-commit already runs one hook process per core, each with its share of the files.
        workers = args.workers if args.workers is not None or not args.hook else 1
        report = audit.run_audit(targets, rules, allowlist, workers=workers)
    except PiperError as exc:
        # Whatever stopped the audit, it did not run: exit 2, never 1 (1 means "found something").
        raise AuditError(str(exc)) from None
    if args.format == "json":
        print(json.dumps(audit.report_json(report), indent=2))
    elif args.format == "sarif":
        print(json.dumps(audit.report_sarif(report), indent=2))
    else:
        _print_text(report)
    return 0 if report.clean else 1


def _print_text(report: audit.AuditReport) -> None:
    for f in report.findings:
        print(f"{f.path}:{f.line}:{f.column}: {f.rule} ({f.kind}) {f.redacted} sha256:{f.sha256}")
    files = len(report.scanned)
    extra = f", {len(report.allowed)} allowlisted" if report.allowed else ""
    extra += f", {len(report.skipped)} binary file(s) skipped" if report.skipped else ""
    if report.clean:
        print(f"audit: clean; {files} file(s) scanned with {len(report.rules)} rules{extra}")
    else:
        print(f"audit: {len(report.findings)} finding(s) of personal data in {files} file(s) scanned{extra}; "
              f"remove them, or accept one in {audit.ALLOWLIST_PATH} by rule and sha256 (see docs/PIPER_MD.md)")


COMMAND = _commands.AUDIT_PIPER_MD


def main(argv: list[str] | None = None) -> int:
    """Run the audit and print its findings (redacted); return 0 clean, 1 findings, 2 could not run."""
    return COMMAND.main(argv)


def hook_main() -> None:
    """The console script `piper-audit-hook` (pyproject): the audit as the pre-commit hook, `--hook` set."""
    _cli.run_command(lambda: main(["--hook", *sys.argv[1:]]))


if __name__ == "__main__":
    _cli.run_command(main)
