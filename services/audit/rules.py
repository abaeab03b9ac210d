"""The audit's rules: one per profile term plus the detectors, and the redaction and hash of a match.

Rules are the union of every profile's `audit.terms` (personal data of any environment must not be
in shared config) plus two built-in detectors: email addresses and phone numbers. A term of two or
more words also matches when a line break (and a markdown quote marker) separates the words.

Each term says whether its case matters: an organisation's acronym is case-sensitive, a name is
not (it is capitalised at the start of a sentence).

A finding never carries the matched text, only a redaction (`C********`) and a sha256 of the
normalised match, which is also the allowlist's key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.errors import AuditError, PiperError
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


def load_rules(project: Project) -> RuleSet:
    """Return the union of every profile's audit terms plus the built-in detectors."""
    try:
        profiles = load_profiles(project)
    except PiperError as exc:
        raise AuditError(f"cannot load the audit rules: {exc}") from None
    return build_rules(profiles)


def build_rules(profiles: Sequence[Profile]) -> RuleSet:
    """Return the rules of the given profiles' audit terms (deduplicated) and the detectors."""
    rules: dict[str, Rule] = {}
    sources: list[Path] = []
    for profile in profiles:
        if profile.audit.terms:
            sources.append(profile.source)
        for index, term in enumerate(profile.audit.terms):
            rule = _term_rule(term, f"{profile.source.name or profile.name}: audit.terms[{index}]")
            rules.setdefault(rule.id, rule)
    detectors = (
        Rule("email-address", "email", "an email address outside the documentation-only domains"),
        Rule("phone-number", "phone", "a phone number (international +CC or (NNN) NNN-NNNN form)"),
    )
    return RuleSet(tuple(rules.values()) + detectors, tuple(sources))


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

