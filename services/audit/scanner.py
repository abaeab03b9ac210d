"""The scanner: compiled rules that find whole-word matches in bytes, in bounded memory.

Every rule matches whole words only: no letter, digit or underscore, ASCII or not, on either side.

Speed: files are read as bytes in chunks of bounded size. Python's `re` is slow on an alternation
of many words (it cannot skip ahead), but fast on a pattern that starts with a literal, so each
term is its own literal-prefixed pattern, and case-insensitive terms are searched in a copy of the
chunk whose ASCII letters are lower-cased (`bytes.translate`, one pass). Word boundaries are checked
inside the pattern for ASCII and in Python, for the rare candidates, for non-ASCII letters.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from services.audit.rules import Rule, match_digest, redact

#: Documentation-only domains (RFC 2606, RFC 6761): an address there is a placeholder, not a person.
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
RESERVED_TLDS = ("example", "invalid", "test", "localhost")

CHUNK_SIZE = 1 << 18  # measured: 256 KiB chunks stay in cache and beat 1-8 MiB ones
#: Bytes kept from one chunk to the next: longer than any match plus its context (a 200-byte term,
#: the longest the rules allow, of 100 one-letter words with 16 separator bytes between each is
#: 1,784 bytes), so a match that straddles a chunk boundary is found whole, exactly once.
_OVERLAP = 4096
_CONTEXT = 80
_SEPARATOR = rb"[\s>]{1,16}"  # between the words of a multi-word term: spaces, a line break, "> "
_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", b"abcdefghijklmnopqrstuvwxyz0000000000")
_CONTINUATION = bytes(range(0x80, 0xC0))
_ASCII_WORD = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_EMAIL_LOCAL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_PHONE_INTL = re.compile(rb"\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){2,6}")


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
    #: Where the match ends: the line of its last character and the column just after it.
    end_line: int = 0
    end_column: int = 0


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
                check = _check_word
                if not rule.case_sensitive and any("0" <= ch <= "9" for ch in rule.term):
                    # The lowered copy turns every digit into 0 (for the phone patterns): "R2" must not find "R7".
                    check = functools.partial(_check_digits, bytes(b for b in rule.term.encode() if 0x30 <= b <= 0x39))
                self._patterns.append(_Pattern(rule, _term_regex(rule), not rule.case_sensitive, check))
            elif rule.id == "export-document":
                regex = re.compile(rb'"format"\s{0,64}:\s{0,64}"piper-user-export"')
                self._patterns.append(_Pattern(rule, regex, False, _check_any, b'"format"'))
            elif rule.id == "personal-data-file":
                self._patterns.append(_Pattern(rule, re.compile(rb'"piper_personal_data"\s{0,64}:'), False,
                                               _check_any, b'"piper_personal_data"'))
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

    def scan_stream(self, stream: BinaryIO, label: str, *, check_binary: bool = True) -> Iterator[Finding]:
        """Yield the findings of one stream, read in chunks: memory stays bounded for any size."""
        for _, _, _, finding in self.scan_region(stream, label, check_binary=check_binary).hits:
            yield finding

    def scan_region(self, stream: BinaryIO, label: str, length: int | None = None,
                    check_binary: bool = True) -> _Region:
        """Return the matches that begin in the next `length` bytes of stream (None: up to its end).

        Read in chunks, so memory stays bounded for any size. Up to _OVERLAP bytes past `length`
        are read so that a match beginning inside the region is found whole. Raises BinaryFile if
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
                    raise BinaryFile()
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


class BinaryFile(Exception):
    """The stream's first 8 KiB hold a NUL byte: it is skipped, not scanned."""


def _finding(rule: Rule, raw: bytes, label: str, line: int, column: int) -> Finding:
    text = raw.decode("utf-8", "replace")
    newline = raw.rfind(b"\n")
    end_line = line + raw.count(b"\n")
    end_column = (column + _chars(raw)) if newline < 0 else _chars(raw[newline + 1:]) + 1
    return Finding(label, line, column, rule.id, rule.kind, redact(text), match_digest(rule, text), end_line,
                   end_column)


def opens_json_object(head: bytes) -> bool:
    """Is this the start of a JSON object (after a byte-order mark and white space)? What a document is."""
    return head.removeprefix(b"\xef\xbb\xbf").lstrip(b" \t\r\n")[:1] == b"{"


def drop_unframed_documents(findings: list[Finding], heads: dict[str, bytes]) -> list[Finding]:
    """Return findings without the document markers of files that are not JSON objects (code, prose).

    `heads` holds the first bytes of each file by label.
    """
    return [f for f in findings if f.kind != "document" or opens_json_object(heads[f.path])]


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


def _check_any(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    return start, end


def _check_digits(digits: bytes, buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    if bytes(b for b in buf[start:end] if 0x30 <= b <= 0x39) != digits:
        return None
    return _check_word(buf, start, end)


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

