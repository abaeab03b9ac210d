"""The personal-data audit of shared files: rules, scanning, redaction, allowlist, report data.

Why this passes where ADR-040's `grep -i "christian\\|xian\\|VA\\|DRAGONS"` fails: grep -i looks for
the letters anywhere, so "VA" matches inside "Available", "Privacy", "evaluate" and "relevant", and
no English document can pass. Here every rule matches whole words only (no letter, digit or
underscore, ASCII or not, on either side), in any case unless the term says it is case-sensitive:
"VA", "va portal", "VA's", "(VA)" and "xian@..." are words; "Available" and "xiangqi" are not.

Nothing in this package prints; findings never carry the matched text, only a redaction
(`C********`) and a sha256 of the normalised match, which is also the allowlist's key.

Modules, each importing only those before it:

    rules      Rule, RuleSet, load_rules: what to look for; redact, match_digest
    scanner    Scanner, Finding: whole-word matches in bytes, in bounded memory   (rules)
    targets    ScanTarget and what to scan: PIPER.md, named files, git            (rules)
    allowlist  AllowEntry, load_allowlist: accepted findings                      (targets)
    runner     run_audit, AuditReport: jobs, the process pool, merging in order   (all above)
    reports    report_json, report_sarif: report data for the edge                (runner, scanner)

Callers use this package's names (`from services import audit`, then `audit.run_audit`). The
tunables (`scanner.CHUNK_SIZE`, `runner.BATCH_BYTES` and the like) live in the module that reads
them and are not re-exported here: setting a copy here would change nothing.
"""

from __future__ import annotations

from services.audit.allowlist import ALLOWLIST_PATH, AllowEntry, load_allowlist
from services.audit.reports import report_json, report_sarif
from services.audit.rules import (
    DETECTORS,
    RULES_FILE,
    TERM_KINDS,
    Rule,
    RuleSet,
    build_rules,
    load_rules,
    match_digest,
    parse_terms,
    redact,
    term_rules,
)
from services.audit.runner import AuditReport, audit_content, run_audit
from services.audit.scanner import Finding, Scanner
from services.audit.targets import (
    PIPER_MD,
    PIPER_MD_PATTERNS,
    ScanTarget,
    git_root,
    has_profiles,
    history_targets,
    hook_targets,
    path_targets,
    piper_md_targets,
    staged_targets,
    tracked_targets,
)

__all__ = [
    "ALLOWLIST_PATH",
    "DETECTORS",
    "PIPER_MD",
    "PIPER_MD_PATTERNS",
    "RULES_FILE",
    "TERM_KINDS",
    "AllowEntry",
    "AuditReport",
    "Finding",
    "Rule",
    "RuleSet",
    "ScanTarget",
    "Scanner",
    "audit_content",
    "build_rules",
    "git_root",
    "has_profiles",
    "history_targets",
    "hook_targets",
    "load_allowlist",
    "load_rules",
    "match_digest",
    "parse_terms",
    "path_targets",
    "piper_md_targets",
    "redact",
    "report_json",
    "report_sarif",
    "run_audit",
    "staged_targets",
    "term_rules",
    "tracked_targets",
]
