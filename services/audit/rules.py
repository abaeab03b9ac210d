"""The audit's rules: one per profile term plus the detectors, and the redaction and hash of a match.

Rules are the union of every profile's `audit.terms` (personal data of any environment must not be
in shared config), the terms of the repository's own rules file (`.piper-audit.yaml`, for a
repository that is not a piper-ops project) and of the command line, plus the built-in detectors:
email addresses, phone numbers, and piper-ops export documents and personal-data files. A term of
two or more words also matches when a line break (and a markdown quote marker) separates the words.

Terms match whole words in any case unless the term says `case_sensitive: true`: whole-word
matching is what makes case-insensitivity safe ("VA" is found in "the va portal", never in
"Available").

A finding never carries the matched text, only a redaction (`C********`) and a sha256 of the
normalised match, which is also the allowlist's key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.errors import AuditError, PiperError, UsageError
from services.files import read_regular_file
from services.profiles import AuditTerm, Profile, load_profiles
from services.project import Project

#: Kinds a profile's audit term may have; anything else is a bad rule (exit 2).
TERM_KINDS = ("name", "username", "email", "organisation", "organization", "phone", "other")
_MAX_TERM_BYTES = 200


@dataclass(frozen=True)
class Rule:
    """One audit rule. Its id and description never contain the term itself."""

    id: str
    kind: str
    description: str
    #: The term's text (empty for detectors); used to build the pattern, never shown.
    term: str = field(default="", repr=False)
    case_sensitive: bool = False


@dataclass(frozen=True)
class RuleSet:
    """The rules of one audit and the files they were defined in (skipped by `--all`)."""

    rules: tuple[Rule, ...]
    sources: tuple[Path, ...] = ()


#: A repository's own rules file (its root): terms for a repository that has no profiles.
RULES_FILE = ".piper-audit.yaml"
PRE_COMMIT_CONFIG = ".pre-commit-config.yaml"
_TERM_KEYS = {"term", "kind", "case_sensitive"}

#: The built-in detectors: rules with no term, each found by its own pattern (services/audit/scanner.py).
DETECTORS = (
    Rule("email-address", "email", "an email address outside the documentation-only domains"),
    Rule("phone-number", "phone", "a phone number (international +CC or (NNN) NNN-NNNN form)"),
    Rule("export-document", "document", "a piper-ops export document (JSON with format piper-user-export), "
                                        "whatever the file is called"),
    Rule("personal-data-file", "document", "a piper-ops personal-data file (JSON with piper_personal_data), "
                                           "whatever the file is called"),
)


def load_rules(project: Project, *, profiles: bool = True, rules_file: Path | None = None,
               terms: Sequence[str] = ()) -> RuleSet:
    """Return the union of every profile's audit terms, the rules file's and the given terms, plus the detectors.

    `profiles=False` reads no profile (the pre-commit hook in a repository without environments/);
    `rules_file` is the repository's rules file (default: RULES_FILE in the project root, if it is
    there; a file named explicitly must exist).
    """
    loaded: Sequence[Profile] = ()
    if profiles:
        try:
            loaded = load_profiles(project)
        except PiperError as exc:
            raise AuditError(f"cannot load the audit rules: {exc}") from None
    chosen = rules_file if rules_file is not None else project.root / RULES_FILE
    extra: list[Rule] = []
    sources: list[Path] = []
    if rules_file is not None or chosen.exists():
        extra.extend(term_rules(_read_rules_file(chosen), f"{chosen.name}: terms"))
        sources.append(chosen)
    extra.extend(term_rules([AuditTerm(t, "other") for t in terms], "--terms"))
    if terms and (project.root / PRE_COMMIT_CONFIG).exists():
        # The hook's `args` hold them: pre-commit's config is then a file that defines rules, not audited.
        sources.append(project.root / PRE_COMMIT_CONFIG)
    base = build_rules(loaded, extra)
    return RuleSet(base.rules, base.sources + tuple(sources))


def build_rules(profiles: Sequence[Profile], extra: Sequence[Rule] = ()) -> RuleSet:
    """Return the rules of the given profiles' audit terms, then the extra ones (deduplicated), and the detectors."""
    rules: dict[str, Rule] = {}
    sources: list[Path] = []
    for profile in profiles:
        if profile.audit.terms:
            sources.append(profile.source)
        for index, term in enumerate(profile.audit.terms):
            rule = _term_rule(term, f"{profile.source.name or profile.name}: audit.terms[{index}]")
            rules.setdefault(rule.id, rule)
    for rule in extra:
        rules.setdefault(rule.id, rule)
    return RuleSet(tuple(rules.values()) + DETECTORS, tuple(sources))


def parse_terms(text: str) -> tuple[str, ...]:
    """Return the terms of a --terms value: comma-separated, blanks dropped."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _read_rules_file(path: Path) -> list[AuditTerm]:
    # The same shape as a profile's audit.terms: a list of {term, kind, case_sensitive}.
    if not path.exists():
        raise AuditError(f"{path} does not exist; pass the rules file, or leave --rules out")
    raw = read_yaml_file(path, "rules file")
    items = raw.get("terms", []) if isinstance(raw, dict) and not set(raw) - {"terms"} else None
    if not isinstance(items, list):
        raise AuditError(f"{path}: must be a mapping with a 'terms' list, e.g. terms: [{{term: Fake Person, "
                         "kind: name}}]; fix the rules file")
    terms = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            item = {"term": item}
        where = f"{path}: terms[{index}]"
        if not isinstance(item, dict) or set(item) - _TERM_KEYS or not isinstance(item.get("term"), str):
            raise AuditError(f"{where} must be a term, or a mapping with term and optionally kind and case_sensitive")
        kind, sensitive = item.get("kind", "name"), item.get("case_sensitive", False)
        if not isinstance(kind, str) or not isinstance(sensitive, bool):
            raise AuditError(f"{where}: kind must be a string and case_sensitive true or false")
        terms.append(AuditTerm(item["term"], kind, sensitive))
    return terms


def term_rules(terms: Sequence[AuditTerm], where: str) -> tuple[Rule, ...]:
    """Return rules for extra terms (say, the users of an environment), deduplicated."""
    rules: dict[str, Rule] = {}
    for index, term in enumerate(terms):
        rule = _term_rule(term, f"{where}[{index}]")
        rules.setdefault(rule.id, rule)
    return tuple(rules.values())


def _term_rule(term: AuditTerm, where: str) -> Rule:
    text = " ".join(term.term.split())
    if not text or not any(ch.isalnum() for ch in text):
        raise AuditError(f"{where}: the term has no letters or digits; give a name, username, email or organisation")
    if len(text.encode("utf-8")) > _MAX_TERM_BYTES:
        raise AuditError(f"{where}: the term is longer than {_MAX_TERM_BYTES} bytes; shorten it")
    if term.kind not in TERM_KINDS:
        raise AuditError(f"{where}: kind {term.kind!r} is unknown; use one of: {', '.join(TERM_KINDS)}")
    key = text if term.case_sensitive else text.casefold()
    rule_id = f"{term.kind}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:8]}"
    case = "case-sensitive" if term.case_sensitive else "any case"
    words = "words" if " " in text else "word"
    return Rule(rule_id, term.kind, f"{term.kind} from {where} (whole {words}, {case})", text, term.case_sensitive)


# --- redaction and hashing ----------------------------------------------------------------


def redact(text: str) -> str:
    """Return the first character and one star per other character: `Christian` -> `C********`."""
    normal = " ".join(text.split())
    return normal[:1] + "*" * (len(normal) - 1)


def match_digest(rule: Rule, text: str) -> str:
    """Return the sha256 (hex) of the normalised match: the allowlist's key."""
    normal = " ".join(text.split())
    if rule.kind == "phone" and not rule.term:
        normal = "+" + "".join(ch for ch in normal if ch.isdigit()) if normal.startswith("+") else "".join(
            ch for ch in normal if ch.isdigit())
    elif not rule.case_sensitive:
        normal = normal.casefold()
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


def read_yaml_file(path: Path, what: str) -> object:
    """Return the data of a small YAML file of the audit's (a rules file, the allowlist): a bounded read of a
    regular file; anything that stops it is one AuditError naming the file and the fix."""
    import yaml

    try:
        return yaml.safe_load(read_regular_file(path, 1 << 20, what=what).decode("utf-8")) or {}
    except UsageError as exc:
        raise AuditError(str(exc)) from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: cannot be read as YAML ({type(exc).__name__}); fix the {what}") from None
