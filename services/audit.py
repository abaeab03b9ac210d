"""The personal-data audit of shared files: rules, scanning, redaction, allowlist, report data.

Why this passes where ADR-040's `grep -i "christian\\|xian\\|VA\\|DRAGONS"` fails: grep -i looks for
the letters anywhere and in any case, so "VA" matches inside "Available", "Privacy", "evaluate"
and "relevant", and no English document can pass. Here every rule matches whole words only (no
letter, digit or underscore, ASCII or not, on either side) and each term says whether its case
matters: VA is case-sensitive (an organisation's acronym), christian is not (a name at the start
of a sentence is capitalised). "VA", "VA's", "(VA)" and "xian@..." are words; "Available" is not.

Rules are the union of every profile's `audit.terms` (personal data of any environment must not be
in shared config) plus two built-in detectors: email addresses and phone numbers. A term of two or
more words also matches when a line break (and a markdown quote marker) separates the words.

Speed: files are read as bytes in chunks of bounded size. Python's `re` is slow on an alternation
of many words (it cannot skip ahead), but fast on a pattern that starts with a literal, so each
term is its own literal-prefixed pattern, and case-insensitive terms are searched in a copy of the
chunk whose ASCII letters are lower-cased (`bytes.translate`, one pass). Word boundaries are checked
inside the pattern for ASCII and in Python, for the rare candidates, for non-ASCII letters. `re`
holds the GIL, so a big audit runs in worker processes: batches of files, or segments of a big file
cut after a newline; run_audit merges their results in order (see _Segment).

Nothing in this module prints; findings never carry the matched text, only a redaction
(`C********`) and a sha256 of the normalised match, which is also the allowlist's key.
"""

from __future__ import annotations

import bisect
import errno
import fnmatch
import hashlib
import itertools
import os
import re
import signal
import stat
import subprocess
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Union

from services.errors import AuditError, PiperError
from services.profiles import AuditTerm, Profile, load_profiles
from services.project import Project

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

#: Kinds a profile's audit term may have; anything else is a bad rule (exit 2).
TERM_KINDS = ("name", "username", "email", "organisation", "organization", "phone", "other")
#: Where accepted findings are listed (in git): rule id + sha256 of the match, never the text.
ALLOWLIST_PATH = "config/audit-allowlist.yaml"
PIPER_MD = "config/PIPER.md"
#: Git pathspecs (and globs) of PIPER.md and its backups in config/.
PIPER_MD_PATTERNS = ("config/PIPER.md", "config/PIPER.md.backup-*")
#: Documentation-only domains (RFC 2606, RFC 6761): an address there is a placeholder, not a person.
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
RESERVED_TLDS = ("example", "invalid", "test", "localhost")

CHUNK_SIZE = 1 << 18  # measured: 256 KiB chunks stay in cache and beat 1-8 MiB ones
#: Files up to this size are scanned together in one buffer (fewer regex calls for many small files).
BATCH_BYTES = 4 << 20
#: At most this many files per job handed to a worker process: enough jobs to keep every core busy.
BATCH_FILES = 500
#: A file at least this big is split into one segment per worker process (cut after a newline).
SEGMENT_BYTES = 16 << 20
#: Below this much work a process pool costs more (about 40 ms to import and fork) than it saves.
PARALLEL_BYTES = 8 << 20
#: What a git-tracked file counts for in that decision: its size is only learnt when a worker opens it.
_TRACKED_FILE_BYTES = 4096
_MAX_TERM_BYTES = 200
#: Bytes kept from one chunk to the next: longer than any match plus its context (a 200-byte term of
#: 100 one-letter words with 16 separator bytes between each is 1,784 bytes), so a match that
#: straddles a chunk boundary is found whole, exactly once.
_OVERLAP = 4096
_CONTEXT = 80
_SEPARATOR = rb"[\s>]{1,16}"  # between the words of a multi-word term: spaces, a line break, "> "
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", b"abcdefghijklmnopqrstuvwxyz0000000000")
_CONTINUATION = bytes(range(0x80, 0xC0))
_ASCII_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_EMAIL_LOCAL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_PHONE_INTL = re.compile(rb"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){2,6}")


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


@dataclass(frozen=True)
class AllowEntry:
    rule: str
    sha256: str
    paths: tuple[str, ...] = ()
    reason: str = ""

    def covers(self, rule: str, digest: str, path: str) -> bool:
        if rule != self.rule or digest != self.sha256:
            return False
        plain = path.split(":", 1)[1] if _is_history_label(path) else path
        return not self.paths or any(fnmatch.fnmatch(plain, pattern) for pattern in self.paths)


@dataclass(frozen=True)
class Finding:
    """Personal data found: where, by which rule, redacted; `sha256` keys the allowlist."""

    path: str
    line: int
    column: int
    rule: str
    kind: str
    redacted: str
    sha256: str


@dataclass(frozen=True)
class AuditReport:
    findings: tuple[Finding, ...]
    allowed: tuple[Finding, ...]
    scanned: tuple[str, ...]
    skipped: tuple[str, ...]
    rules: tuple[Rule, ...]

    @property
    def clean(self) -> bool:
        return not self.findings


# --- rules ---------------------------------------------------------------------------------


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


# --- the scanner ---------------------------------------------------------------------------


class _Pattern:
    """One compiled pattern: which rule it belongs to and which buffer (raw or lowered) it reads."""

    def __init__(self, rule: Rule, regex: re.Pattern[bytes], lowered: bool, check, needle: bytes = b"") -> None:
        self.rule = rule
        self.regex = regex
        self.lowered = lowered
        self.check = check  # (raw buffer, start, end) -> (start, end) or None
        #: The byte every match starts with, when it is rare in text ("@", "+", "("): `bytes.find`
        #: (memchr) skips a chunk without it ten times faster than the regex's own search.
        self.needle = needle


#: One match: (start, end, index of the pattern in Scanner._patterns).
_Match = tuple[int, int, int]


@dataclass
class _Region:
    """What scanning one stretch of a stream found, with offsets and lines relative to its start."""

    #: (pattern index, start offset, end offset, finding); the finding's line counts from the region's.
    hits: list[tuple[int, int, int, Finding]]
    newlines: int


class Scanner:
    """Compiled rules; scans streams in bounded memory."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self._patterns: list[_Pattern] = []
        for rule in self.rules:
            if rule.term:
                self._patterns.append(_Pattern(rule, _term_regex(rule), not rule.case_sensitive, _check_word))
            elif rule.id == "email-address":
                regex = re.compile(rb"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}")
                self._patterns.append(_Pattern(rule, regex, False, _check_email, b"@"))
            elif rule.id == "phone-number":
                self._patterns.append(_Pattern(rule, re.compile(rb"\+[1-9][0-9 ().-]{6,24}[0-9]"), False,
                                               _check_phone_intl, b"+"))
                self._patterns.append(_Pattern(rule, re.compile(rb"000(?P<sep>[ .-])000(?P=sep)0000"), True,
                                               _check_phone_local))
                self._patterns.append(_Pattern(rule, re.compile(rb"\(000\) ?000[ .-]0000"), True,
                                               _check_phone_local, b"("))
        self._need_lowered = any(p.lowered for p in self._patterns)

    def matches(self, buf: bytes, start: int, limit: int, resume: dict[int, int] | None = None) -> list[_Match]:
        """Return (start, end, pattern index) of the matches in buf that begin in [start, limit), sorted."""
        lowered = buf.translate(_LOWER) if self._need_lowered else buf
        found: list[_Match] = []
        for index, pattern in enumerate(self._patterns):
            source = lowered if pattern.lowered else buf
            pos = max(start, resume.get(index, 0)) if resume is not None else start
            last_end = 0
            if pattern.needle:
                pos = source.find(pattern.needle, pos, limit)
            if pos >= 0:
                for m in pattern.regex.finditer(source, pos):
                    if m.start() >= limit:
                        break
                    span = pattern.check(buf, m.start(), m.end())
                    if span is not None:
                        found.append((span[0], span[1], index))
                        last_end = max(last_end, span[1])
            if resume is not None:
                resume[index] = last_end
        found.sort()
        return found

    def rule_of(self, index: int) -> Rule:
        return self._patterns[index].rule

    def scan_stream(self, stream: BinaryIO, label: str) -> Iterator[Finding]:
        """Yield the findings of one stream, read in chunks: memory stays bounded for any size."""
        for _, _, _, finding in self.scan_region(stream, label).hits:
            yield finding

    def scan_region(self, stream: BinaryIO, label: str, length: int | None = None,
                    check_binary: bool = True) -> _Region:
        """Return the matches that begin in the next `length` bytes of stream (None: up to its end).

        Read in chunks, so memory stays bounded for any size. Up to _OVERLAP bytes past `length`
        are read so that a match beginning inside the region is found whole. Raises _BinaryFile if
        check_binary and the first 8 KiB hold a NUL byte.
        """
        hits: list[tuple[int, int, int, Finding]] = []
        buf = b""
        base = 0  # offset of buf[0] from the region's start
        line0, col0 = 1, 0  # line number and character column at buf[0]
        search_from = 0
        resume: dict[int, int] = {}
        while True:
            want = CHUNK_SIZE if length is None else min(CHUNK_SIZE, length + _OVERLAP - base - len(buf))
            data = stream.read(want) if want > 0 else b""
            if check_binary:
                check_binary = False
                if b"\0" in data[:8192]:
                    raise _BinaryFile()
            eof = not data
            buf = buf + data if buf else data
            limit = len(buf) if eof else len(buf) - _OVERLAP
            if length is not None:
                limit = min(limit, length - base)
            if limit > search_from:
                for start, end, index in self.matches(buf, search_from, limit, resume):
                    line, col = _position(buf, start, line0, col0)
                    hits.append((index, base + start, base + end, _finding(self.rule_of(index), buf[start:end],
                                                                           label, line, col)))
                search_from = limit
            if eof:
                return _Region(hits, line0 - 1 + buf.count(b"\n", 0, max(search_from, 0)))
            cut = max(0, search_from - _CONTEXT)
            if cut:
                line0 += buf.count(b"\n", 0, cut)
                newline = buf.rfind(b"\n", 0, cut)
                col0 = _chars(buf[newline + 1:cut]) if newline >= 0 else col0 + _chars(buf[:cut])
                buf = buf[cut:]
                base += cut
                search_from -= cut
                resume = {k: max(0, v - cut) for k, v in resume.items()}

    def scan_buffers(self, items: Sequence[tuple[str, bytes]]) -> list[Finding]:
        """Return the findings of several small files, scanned together in one buffer."""
        starts: list[int] = []
        parts: list[bytes] = []
        offset = 0
        for _, content in items:
            starts.append(offset)
            parts.append(content)
            offset += len(content) + 3
            parts.append(b"\n\0\n")  # no word, email, phone or multi-word term crosses a NUL
        buf = b"".join(parts)
        findings = []
        for start, end, index in self.matches(buf, 0, len(buf)):
            item = bisect.bisect_right(starts, start) - 1
            line, col = _position(buf, start, 1, 0, starts[item])
            findings.append(_finding(self.rule_of(index), buf[start:end], items[item][0], line, col))
        return findings


class _BinaryFile(Exception):
    pass


def _finding(rule: Rule, raw: bytes, label: str, line: int, column: int) -> Finding:
    text = raw.decode("utf-8", "replace")
    return Finding(label, line, column, rule.id, rule.kind, redact(text), match_digest(rule, text))


def _chars(raw: bytes) -> int:
    # Characters in UTF-8 bytes: every byte that does not continue a multi-byte sequence.
    return len(raw.translate(None, _CONTINUATION))


def _position(buf: bytes, start: int, line0: int, col0: int, base: int = 0) -> tuple[int, int]:
    # Line and character column (both 1-based) of buf[start], given those of buf[base].
    newline = buf.rfind(b"\n", base, start)
    if newline < 0:
        return line0, col0 + _chars(buf[base:start]) + 1
    return line0 + buf.count(b"\n", base, start), _chars(buf[newline + 1:start]) + 1


def _term_regex(rule: Rule) -> re.Pattern[bytes]:
    words = rule.term.split(" ")
    insensitive = not rule.case_sensitive
    word_class = rb"[a-z0_]" if insensitive else rb"[A-Za-z0-9_]"
    encoded = [_word_pattern(word, insensitive) for word in words]
    body = _SEPARATOR.join(encoded)
    # The lookbehind comes after the first word so that the pattern still starts with a literal,
    # which lets `re` skip ahead fast; it needs a fixed width, which non-ASCII case pairs can break.
    first = encoded[0]
    rest = body[len(first):]
    try:
        return re.compile(first + rb"(?<!" + word_class + first + rb")" + rest + rb"(?!" + word_class + rb")")
    except re.error:
        return re.compile(body + rb"(?!" + word_class + rb")")


def _word_pattern(word: str, insensitive: bool) -> bytes:
    if not insensitive:
        return re.escape(word.encode("utf-8"))
    out = []
    for ch in word:
        if ch.isascii():
            out.append(re.escape(ch.encode("ascii").translate(_LOWER)))
        else:
            variants = sorted({v.encode("utf-8") for v in (ch, ch.lower(), ch.upper()) if len(v) == 1})
            out.append(b"(?:" + b"|".join(re.escape(v) for v in variants) + b")")
    return b"".join(out)


def _is_word_at(buf: bytes, index: int, before: bool) -> bool:
    # Is the character just before (or at) index a letter, digit or underscore, in any script?
    if before:
        if index <= 0:
            return False
        byte = buf[index - 1]
        if byte < 0x80:
            return byte in _ASCII_WORD
        start = index - 1
        while start > max(0, index - 4) and 0x80 <= buf[start] < 0xC0:
            start -= 1
        char = buf[start:index].decode("utf-8", "ignore")
    else:
        if index >= len(buf):
            return False
        byte = buf[index]
        if byte < 0x80:
            return byte in _ASCII_WORD
        char = buf[index:index + 4].decode("utf-8", "ignore")[:1]
    return bool(char) and (char.isalnum() or char == "_")


def _check_word(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    if _is_word_at(buf, start, True) or _is_word_at(buf, end, False):
        return None
    return start, end


def _check_email(buf: bytes, at: int, end: int) -> tuple[int, int] | None:
    start = at
    while start > 0 and at - start < 64 and buf[start - 1] in _EMAIL_LOCAL:
        start -= 1
    if start > 0 and buf[start - 1] in _EMAIL_LOCAL:
        return None  # a local part longer than 64 characters: not an address
    while start < at and buf[start] in b".-+":
        start += 1
    domain = buf[at + 1:end].rstrip(b".-").lower()
    labels = domain.split(b".")
    if start == at or len(labels) < 2 or not labels[-1].isalpha() or len(labels[-1]) < 2:
        return None
    if _is_word_at(buf, start, True):
        return None
    name = domain.decode("ascii")
    if name in RESERVED_DOMAINS or any(name.endswith("." + d) for d in RESERVED_DOMAINS) or labels[-1].decode() in RESERVED_TLDS:
        return None
    return start, at + 1 + len(domain)


def _check_phone_intl(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    m = _PHONE_INTL.match(buf, start, end)
    if m is None or _is_word_at(buf, start, True) or _is_word_at(buf, m.end(), False):
        return None
    digits = sum(1 for b in buf[start:m.end()] if 0x30 <= b <= 0x39)
    return (start, m.end()) if 8 <= digits <= 15 else None


def _check_phone_local(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    if start > 0 and (buf[start - 1] in _ASCII_WORD or buf[start - 1] in b".+-"):
        return None
    if end < len(buf) and (buf[end] in _ASCII_WORD or (buf[end] in b".-" and end + 1 < len(buf) and 0x30 <= buf[end + 1] <= 0x39)):
        return None
    return start, end


# --- what to scan --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One thing to scan: a label for reports and how to get its bytes."""

    label: str
    path: Path | str | None = None
    content: bytes | None = None
    #: A git-tracked path: skipped, not an error, when the working tree has a symlink, a directory or
    #: nothing there (git tracks symlinks and submodules; a file may be deleted but not yet staged).
    tracked: bool = False


def piper_md_targets(project: Project) -> list[Target]:
    """Return config/PIPER.md (if present) and every backup of it in config/, oldest first."""
    config = project.config_dir
    targets = []
    if (config / "PIPER.md").exists():
        targets.append(Target(PIPER_MD, config / "PIPER.md"))
    for path in sorted(config.glob("PIPER.md.backup-*")):
        if path.is_file() and not path.name.startswith("."):
            targets.append(Target(f"config/{path.name}", path))
    return targets


def path_targets(project: Project, paths: Iterable[str]) -> list[Target]:
    """Return targets for files named on the command line (relative to the current directory)."""
    targets = []
    for name in paths:
        path = Path(name)
        if not path.exists():
            raise AuditError(f"{name}: no such file; check the path")
        targets.append(Target(name, path))
    return targets


def tracked_targets(project: Project, rules: RuleSet) -> list[Target]:
    """Return every git-tracked file of the project, except the profiles that define the rules."""
    # Names as git prints them (relative to the root), resolved or not: no per-file stat or Path here,
    # which cost more than the scan itself on 20,000 files; the workers check each file as they open it.
    root, real_root = str(project.root), os.path.realpath(project.root)
    skip = set()
    for source in rules.sources:
        skip.add(os.path.relpath(source, root))
        skip.add(os.path.relpath(os.path.realpath(source), real_root))
    return [Target(name, os.path.join(root, name), tracked=True)
            for name in _git_lines(project, ["ls-files", "-z"], "--all") if name not in skip]


def staged_targets(project: Project, rules: RuleSet, everything: bool) -> list[Target]:
    """Return the staged (index) content of PIPER.md and its backups, or of every staged file."""
    names = _git_lines(project, ["diff", "--cached", "--name-only", "-z", "--diff-filter=ACMR"], "--staged")
    skip = {source.resolve() for source in rules.sources}
    targets = []
    for name in names:
        if not everything and not _is_piper_md(name):
            continue
        if (project.root / name).resolve() in skip:
            continue
        targets.append(Target(f":{name}", content=_git_bytes(project, ["show", f":{name}"], "--staged")))
    return targets


def history_targets(project: Project, rules: RuleSet, everything: bool) -> Iterator[Target]:
    """Yield every distinct past version of PIPER.md and its backups (or of every file) in git."""
    args = ["log", "--all", "--no-renames", "--format=@%H", "--name-only", "-z"]
    if not everything:
        args += ["--", *PIPER_MD_PATTERNS]
    skip = {str(source.resolve().relative_to(project.root)) for source in rules.sources
            if source.resolve().is_relative_to(project.root)}
    raw = _git_bytes(project, args, "--history").decode("utf-8", "surrogateescape")
    pairs: list[tuple[str, str]] = []
    commit = ""
    for token in re.split(r"[\0\n]", raw):
        if token.startswith("@") and len(token) == 41:
            commit = token[1:]
        elif token and commit and (everything or _is_piper_md(token)) and token not in skip:
            pairs.append((commit, token))
    seen: set[bytes] = set()
    for commit, name, blob, content in _cat_blobs(project, pairs):
        if blob in seen:
            continue
        seen.add(blob)
        yield Target(f"{commit[:12]}:{name}", content=content)


def _cat_blobs(project: Project, pairs: list[tuple[str, str]]) -> Iterator[tuple[str, str, bytes, bytes]]:
    # One `git cat-file --batch` for all versions; a path deleted in a commit reports "missing".
    if not pairs:
        return
    request = "".join(f"{commit}:{name}\n" for commit, name in pairs).encode("utf-8", "surrogateescape")
    try:
        out = subprocess.run(["git", "cat-file", "--batch"], cwd=project.root, input=request,
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise AuditError(f"--history: git cat-file failed in {project.root} ({exc}); check the repository") from None
    pos = 0
    for commit, name in pairs:
        header_end = out.index(b"\n", pos)
        header = out[pos:header_end].split()
        pos = header_end + 1
        if len(header) == 3 and header[1] == b"blob":
            size = int(header[2])
            content = out[pos:pos + size]
            pos += size + 1
            yield commit, name, header[0], content
        elif len(header) == 3:
            pos += int(header[2]) + 1


def _is_piper_md(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in PIPER_MD_PATTERNS)


def _is_history_label(label: str) -> bool:
    head = label.split(":", 1)[0]
    return (len(head) == 12 and all(c in "0123456789abcdef" for c in head)) or head == ""


def _git_bytes(project: Project, args: list[str], flag: str) -> bytes:
    try:
        result = subprocess.run(["git", *args], cwd=project.root, capture_output=True, check=False)
    except OSError:
        raise AuditError(f"{flag} needs git, which was not found; install git or drop {flag}") from None
    if result.returncode != 0:
        message = result.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = message[0] if message else f"exit {result.returncode}"
        raise AuditError(f"{flag}: git failed in {project.root} ({detail}); run it inside a git checkout")
    return result.stdout


def _git_lines(project: Project, args: list[str], flag: str) -> list[str]:
    raw = _git_bytes(project, args, flag)
    return [name for name in raw.decode("utf-8", "surrogateescape").split("\0") if name]


# --- allowlist and the audit ---------------------------------------------------------------


def load_allowlist(path: Path) -> tuple[AllowEntry, ...]:
    """Return the accepted findings listed in path; a missing file is an empty list."""
    import yaml

    if not path.exists():
        return ()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: cannot be read as YAML ({type(exc).__name__}); fix the allowlist") from None
    items = raw.get("allow", []) if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise AuditError(f"{path}: must be a mapping with an 'allow' list; fix the allowlist")
    entries = []
    for index, item in enumerate(items):
        where = f"{path}: allow[{index}]"
        if not isinstance(item, dict) or set(item) - {"rule", "sha256", "paths", "reason"}:
            raise AuditError(f"{where} must have rule, sha256 and optionally paths and reason")
        rule, digest, paths = item.get("rule"), str(item.get("sha256", "")), item.get("paths", [])
        if not isinstance(rule, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise AuditError(f"{where} needs a rule id and the 64-hex sha256 the audit printed")
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise AuditError(f"{where}: paths must be a list of glob patterns")
        entries.append(AllowEntry(rule, digest, tuple(paths), str(item.get("reason", ""))))
    return tuple(entries)


def run_audit(targets: Iterable[Target], rules: RuleSet, allowlist: Sequence[AllowEntry] = (),
              workers: int | None = None) -> AuditReport:
    """Scan the targets and return the report; unreadable files raise AuditError (exit 2).

    `workers` is how many processes scan (default: one per available core); a small audit always
    runs in this process. Findings come in the order of the targets whatever the number of workers.
    """
    workers = max(1, workers if workers is not None else _available_cores())
    found: list[Finding] = []
    scanned: list[str] = []
    skipped: list[str] = []
    # The segments of one file come in order; their lines are counted from the segment's start.
    line_offset, last_end, binary = 0, {}, False
    for job, outcome in _run_jobs(_plan_jobs(targets, workers), rules.rules, workers):
        found.extend(outcome.findings)
        scanned.extend(outcome.scanned)
        skipped.extend(outcome.skipped)
        if not isinstance(job, _Segment):
            continue
        if job.start == 0:
            line_offset, last_end, binary = 0, {}, bool(outcome.skipped)
        if binary:
            continue
        for index, start, end, finding in outcome.hits:
            # One regex scan of the whole file resumes after each match: a match of the same pattern
            # that begins inside one found in the previous segment would not exist.
            if job.start + start < last_end.get(index, 0):
                continue
            last_end[index] = job.start + end
            found.append(replace(finding, line=finding.line + line_offset) if line_offset else finding)
        line_offset += outcome.newlines
    findings, allowed = [], []
    for finding in found:
        if any(entry.covers(finding.rule, finding.sha256, finding.path) for entry in allowlist):
            allowed.append(finding)
        else:
            findings.append(finding)
    return AuditReport(tuple(findings), tuple(allowed), tuple(scanned), tuple(skipped), rules.rules)


def audit_content(content: bytes, rules: RuleSet, label: str = "content") -> list[Finding]:
    """Return the findings in one piece of content (used before writing a backup)."""
    return list(run_audit([Target(label, content=content)], rules).findings)


# --- jobs: what one worker scans, in this process or a pool of processes --------------------


@dataclass(frozen=True)
class _Batch:
    """Targets scanned by one job, in order: small ones together in one buffer, big ones streamed."""

    targets: tuple[Target, ...]


@dataclass(frozen=True)
class _Segment:
    """The bytes [start, end) of one big file (end None: to its end); start is 0 or after a newline."""

    label: str
    path: Path | str
    start: int
    end: int | None


_Job = Union[_Batch, _Segment]


@dataclass
class _Outcome:
    """What one job found. A segment's hits are merged in order by run_audit (offsets, lines)."""

    findings: list[Finding] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    hits: list[tuple[int, int, int, Finding]] = field(default_factory=list)
    newlines: int = 0


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _plan_jobs(targets: Iterable[Target], workers: int) -> Iterator[tuple[_Job, int]]:
    # Yields each job and about how many bytes it scans (to decide whether a pool pays off).
    batch: list[Target] = []
    size = 0
    for target in targets:
        if target.content is not None:
            weight = len(target.content)
        elif target.tracked:
            weight = _TRACKED_FILE_BYTES
        else:
            assert target.path is not None
            try:
                info = os.stat(target.path)
            except OSError as exc:
                raise AuditError(f"{target.label}: cannot be read ({exc.strerror or exc}); fix its permissions or path") from None
            weight = info.st_size
            if stat.S_ISREG(info.st_mode) and weight > BATCH_BYTES // 4:
                if batch:
                    yield _Batch(tuple(batch)), size
                    batch, size = [], 0
                parts = workers if weight >= SEGMENT_BYTES else 1
                for segment in _segments(target, weight, parts):
                    yield segment, (segment.end or weight) - segment.start
                continue
        batch.append(target)
        size += weight
        if size >= BATCH_BYTES or len(batch) >= BATCH_FILES:
            yield _Batch(tuple(batch)), size
            batch, size = [], 0
    if batch:
        yield _Batch(tuple(batch)), size


def _segments(target: Target, size: int, parts: int) -> list[_Segment]:
    # Cut after a newline, so that each segment starts at column 1 of a line and no word is split.
    assert target.path is not None
    starts = [0]
    if parts > 1:
        try:
            with open(target.path, "rb") as stream:
                for part in range(1, parts):
                    at = max(size * part // parts, starts[-1])
                    stream.seek(at)
                    newline = stream.read(1 << 16).find(b"\n")
                    if newline >= 0 and at + newline + 1 < size:  # else a line over 64 KiB: no cut here
                        starts.append(at + newline + 1)
        except OSError as exc:
            raise AuditError(f"{target.label}: cannot be read ({exc.strerror or exc}); fix its permissions or path") from None
    ends: list[int | None] = [*starts[1:], None]
    return [_Segment(target.label, target.path, start, end) for start, end in zip(starts, ends)]


def _run_jobs(planned: Iterator[tuple[_Job, int]], rules: tuple[Rule, ...],
              workers: int) -> Iterator[tuple[_Job, _Outcome]]:
    # Yields each job with its outcome, in the order planned.
    held: list[_Job] = []
    if workers > 1:
        weight = 0
        for job, size in planned:
            held.append(job)
            weight += size
            if weight >= PARALLEL_BYTES and len(held) > 1:
                break
        else:
            workers = 1  # everything is planned, and it is small or one job
    jobs = itertools.chain(held, (job for job, _ in planned))
    pool = _start_pool(rules, workers) if workers > 1 else None
    if pool is None:
        scanner = Scanner(rules)
        for job in jobs:
            yield job, _run_job(job, scanner)
        return
    with pool:
        # At most two jobs per worker wait in the queue: memory stays bounded (a job of content
        # targets holds their bytes) and results are taken in the order they were planned.
        pending: deque[tuple[_Job, Future[_Outcome]]] = deque()
        for job in jobs:
            pending.append((job, pool.submit(_run_job, job)))
            if len(pending) > 2 * workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def _start_pool(rules: tuple[Rule, ...], workers: int) -> ProcessPoolExecutor | None:
    # Imported here: a small audit (the pre-commit hook, a backup) never pays for it.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the workers start in milliseconds with this module already imported.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    try:
        return ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(rules,))
    except (OSError, ImportError, NotImplementedError):  # no semaphores here (some sandboxes)
        return None


#: The scanner of a worker process, compiled once by _start_worker.
_worker_scanner: Scanner | None = None


def _start_worker(rules: tuple[Rule, ...]) -> None:
    global _worker_scanner
    # Ctrl-C reaches the whole process group: the parent stops the audit, the workers just end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_scanner = Scanner(rules)


def _run_job(job: _Job, scanner: Scanner | None = None) -> _Outcome:
    scanner = scanner or _worker_scanner
    assert scanner is not None
    if isinstance(job, _Segment):
        return _scan_segment(scanner, job)
    return _scan_batch(scanner, job)


def _scan_segment(scanner: Scanner, segment: _Segment) -> _Outcome:
    try:
        with open(segment.path, "rb") as stream:
            stream.seek(segment.start)
            length = None if segment.end is None else segment.end - segment.start
            region = scanner.scan_region(stream, segment.label, length, check_binary=segment.start == 0)
    except _BinaryFile:
        return _Outcome(skipped=[segment.label])
    except OSError as exc:
        raise AuditError(f"{segment.label}: cannot be read ({exc.strerror or exc}); fix its permissions or path") from None
    return _Outcome(scanned=[segment.label] if segment.start == 0 else [], hits=region.hits, newlines=region.newlines)


def _scan_batch(scanner: Scanner, batch: _Batch) -> _Outcome:
    outcome = _Outcome()
    pending: list[tuple[str, bytes]] = []
    size = 0

    def flush() -> None:
        nonlocal pending, size
        if pending:
            outcome.findings.extend(scanner.scan_buffers(pending))
            pending, size = [], 0

    for target in batch.targets:
        content = target.content
        if content is None:
            assert target.path is not None
            try:
                stream = _open_target(target.path, target.tracked)
                if stream is None:
                    continue
                with stream:
                    if os.fstat(stream.fileno()).st_size > BATCH_BYTES // 4:
                        flush()
                        outcome.findings.extend(scanner.scan_stream(stream, target.label))
                        outcome.scanned.append(target.label)
                        continue
                    content = stream.read()
            except _BinaryFile:
                outcome.skipped.append(target.label)
                continue
            except OSError as exc:
                raise AuditError(f"{target.label}: cannot be read ({exc.strerror or exc}); fix its permissions or path") from None
        if b"\0" in content[:8192]:
            outcome.skipped.append(target.label)
            continue
        outcome.scanned.append(target.label)
        pending.append((target.label, content))
        size += len(content)
        if size >= BATCH_BYTES:
            flush()
    flush()
    return outcome


def _open_target(path: Path | str, tracked: bool) -> BinaryIO | None:
    # A tracked path that is a symlink, a directory, a submodule or gone is not scanned (None).
    if not tracked:
        return open(path, "rb")
    try:
        # O_NONBLOCK: a FIFO where git had a file must not hang the audit; no effect on files.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW on a symlink
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return open(fd, "rb")


# --- report data for the edge --------------------------------------------------------------


def report_json(report: AuditReport) -> dict[str, Any]:
    """Return the report as JSON-ready data (matches redacted)."""
    return {
        "clean": report.clean,
        "findings": [_finding_dict(f) for f in report.findings],
        "allowed": [_finding_dict(f) for f in report.allowed],
        "scanned": len(report.scanned),
        "skipped": list(report.skipped),
    }


def _finding_dict(finding: Finding) -> dict[str, Any]:
    return {"path": finding.path, "line": finding.line, "column": finding.column, "rule": finding.rule,
            "kind": finding.kind, "match": finding.redacted, "sha256": finding.sha256}


def report_sarif(report: AuditReport) -> dict[str, Any]:
    """Return the report as SARIF 2.1.0 data (matches redacted), for code-scanning tools."""
    used = {f.rule for f in report.findings}
    rules = [{"id": r.id, "name": r.kind, "shortDescription": {"text": r.description},
              "defaultConfiguration": {"level": "error"}} for r in report.rules if r.id in used]
    results = [{
        "ruleId": f.rule,
        "level": "error",
        "message": {"text": f"personal data ({f.kind}) {f.redacted}; remove it or allowlist sha256 {f.sha256}"},
        "partialFingerprints": {"matchSha256/v1": f.sha256},
        "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": f.path},
            "region": {"startLine": f.line, "startColumn": f.column},
        }}],
    } for f in report.findings]
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "piper-ops audit-piper-md", "informationUri":
                                      "docs/PIPER_MD.md", "rules": rules}}, "results": results}],
    }
