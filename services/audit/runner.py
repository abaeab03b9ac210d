"""The audit itself: plan the scan as jobs, run them here or in worker processes, merge in order.

`re` holds the GIL, so a big audit runs in worker processes: batches of files, or segments of a big
file cut after a newline; run_audit merges their results in order (see _Segment). A small audit
(the pre-commit hook, a backup) runs in this process and never starts a pool.
"""

from __future__ import annotations

import errno
import itertools
import os
import signal
import stat
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Union

from services.audit.allowlist import AllowEntry
from services.audit.rules import Rule, RuleSet
from services.audit.scanner import BinaryFile, Finding, Scanner, drop_unframed_documents, opens_json_object
from services.audit.targets import ScanTarget
from services.errors import AuditError

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

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
#: Bytes of a file's start that tell a JSON document (an export, a personal-data file) from code or prose.
_HEAD = 4096


@dataclass(frozen=True)
class AuditReport:
    """What one audit found, what the allowlist accepted, which files it scanned and skipped, and its rules."""

    findings: tuple[Finding, ...]
    allowed: tuple[Finding, ...]
    scanned: tuple[str, ...]
    skipped: tuple[str, ...]
    rules: tuple[Rule, ...]

    @property
    def clean(self) -> bool:
        return not self.findings


def run_audit(targets: Iterable[ScanTarget], rules: RuleSet, allowlist: Sequence[AllowEntry] = (),
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
            found.append(replace(finding, line=finding.line + line_offset, end_line=finding.end_line + line_offset)
                         if line_offset else finding)
        line_offset += outcome.newlines
    findings, allowed = [], []
    for finding in found:
        if any(entry.covers(finding.rule, finding.sha256, finding.path, finding.kind) for entry in allowlist):
            allowed.append(finding)
        else:
            findings.append(finding)
    return AuditReport(tuple(findings), tuple(allowed), tuple(scanned), tuple(skipped), rules.rules)


def audit_content(content: bytes, rules: RuleSet, label: str = "content") -> list[Finding]:
    """Return the findings in one piece of content (used before writing a backup)."""
    return list(run_audit([ScanTarget(label, content=content, text=True)], rules).findings)


# --- jobs: what one worker scans, in this process or a pool of processes --------------------


@dataclass(frozen=True)
class _Batch:
    """Targets scanned by one job, in order: small ones together in one buffer, big ones streamed."""

    targets: tuple[ScanTarget, ...]


@dataclass(frozen=True)
class _Segment:
    """The bytes [start, end) of one big file (end None: to its end); start is 0 or after a newline."""

    label: str
    path: Path | str
    start: int
    end: int | None
    text: bool = False


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


def _plan_jobs(targets: Iterable[ScanTarget], workers: int) -> Iterator[tuple[_Job, int]]:
    # Yields each job and about how many bytes it scans (to decide whether a pool pays off).
    batch: list[ScanTarget] = []
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
                raise _unreadable(target.label, exc) from None
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


def _segments(target: ScanTarget, size: int, parts: int) -> list[_Segment]:
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
            raise _unreadable(target.label, exc) from None
    ends: list[int | None] = [*starts[1:], None]
    return [_Segment(target.label, target.path, start, end, target.text) for start, end in zip(starts, ends)]


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

    # fork: the workers start in milliseconds with the audit's modules already imported.
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
            region = scanner.scan_region(stream, segment.label, length,
                                         check_binary=segment.start == 0 and not segment.text)
            hits = region.hits
            if _unframed((f for _, _, _, f in hits), stream.fileno()):
                hits = [hit for hit in hits if hit[3].kind != "document"]
    except BinaryFile:
        return _Outcome(skipped=[segment.label])
    except OSError as exc:
        raise _unreadable(segment.label, exc) from None
    return _Outcome(scanned=[segment.label] if segment.start == 0 else [], hits=hits, newlines=region.newlines)


def _unframed(findings: Iterable[Finding], fd: int) -> bool:
    """Whether a file's document markers are to be dropped: it has some, and it is no JSON object (code, prose)."""
    return any(f.kind == "document" for f in findings) and not opens_json_object(os.pread(fd, _HEAD, 0))


def _scan_batch(scanner: Scanner, batch: _Batch) -> _Outcome:
    outcome = _Outcome()
    pending: list[tuple[str, bytes]] = []
    size = 0

    def flush() -> None:
        nonlocal pending, size
        if pending:
            found = scanner.scan_buffers(pending)
            if any(f.kind == "document" for f in found):
                found = drop_unframed_documents(found, {label: content[:_HEAD] for label, content in pending})
            outcome.findings.extend(found)
            pending, size = [], 0

    for target in batch.targets:
        content = target.content
        if content is None:
            assert target.path is not None
            try:
                opened = _open_target(target.path, target.tracked)
                if opened is None:
                    continue
                fd, file_size = opened
                try:
                    if file_size > BATCH_BYTES // 4:
                        flush()
                        with open(fd, "rb", closefd=False) as stream:
                            found = list(scanner.scan_stream(stream, target.label, check_binary=not target.text))
                        if _unframed(found, fd):
                            found = [f for f in found if f.kind != "document"]
                        outcome.findings.extend(found)
                        outcome.scanned.append(target.label)
                        continue
                    content = _read_to_end(fd, file_size)
                finally:
                    os.close(fd)
            except BinaryFile:
                outcome.skipped.append(target.label)
                continue
            except OSError as exc:
                raise _unreadable(target.label, exc) from None
        if b"\0" in content[:8192] and not target.text:
            outcome.skipped.append(target.label)
            continue
        outcome.scanned.append(target.label)
        pending.append((target.label, content))
        size += len(content)
        if size >= BATCH_BYTES:
            flush()
    flush()
    return outcome


def _unreadable(label: str, exc: OSError) -> AuditError:
    return AuditError(f"{label}: cannot be read ({exc.strerror or exc}); fix its permissions or path")


def _open_target(path: Path | str, tracked: bool) -> tuple[int, int] | None:
    """Return an open descriptor of the file and its size; the caller closes it.

    A tracked path that is a symlink, a directory, a submodule or gone is not scanned (None). Any
    other path must be a regular file: a FIFO would hang the audit, a device never end. Plain
    descriptors, not file objects: on 20,000 small files (the hook with --all-files) a buffered
    file object costs as much as the scan.
    """
    if not tracked:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        info = _fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
            raise AuditError(f"{path} is not a regular file (a FIFO, socket or device); the audit reads files only")
        return fd, info.st_size
    try:
        # O_NONBLOCK: a FIFO where git had a file must not hang the audit; no effect on files.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW on a symlink
            return None
        raise
    info = _fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return fd, info.st_size


def _fstat(fd: int) -> os.stat_result:
    # The descriptor is closed if even this fails: the caller only ever gets it back open.
    try:
        return os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def _read_to_end(fd: int, size: int) -> bytes:
    # The whole file: one read when it is still the size fstat saw, else (it grew, or a short read) to its end.
    first = os.read(fd, size + 1)
    if len(first) == size:
        return first
    chunks = [first]
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)
