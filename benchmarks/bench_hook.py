"""Benchmark the pre-commit hook as CI runs it: `pre-commit run --all-files` on a 20,000-file repository.

    python benchmarks/bench_hook.py [--files 20000] [--runs 5]

The hook is this working tree at one commit (copied as .ci/run copies it), used in the remote form
(`repo:` its path, `rev:` that commit) from a repository that is not a piper-ops checkout, with
the same terms as benchmarks/bench_audit.py in its .piper-audit.yaml. The baseline is `git grep`
of the same words (whole words, any case) in the same repository. Beside it, what bounds the figure:
pre-commit with a hook that does nothing, with one that only reads the files it is given (the least a
hook in Python can cost), and with `git grep` itself as the hook. Everything is made in a
temporary directory, PRE_COMMIT_HOME included, and removed at the end. Prints a Markdown table
(docs/BENCHMARKS.md); never fails for being slow.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_audit import TERMS, _text, _timed  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
_GIT_ID = {"GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=dict(os.environ, **_GIT_ID), capture_output=True, check=True,
                          text=True).stdout


def _hook_repo(dest: Path) -> str:
    # This working tree at one commit: what `rev:` names.
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout
    files = b"\0".join(n for n in names.split(b"\0") if n and (ROOT / os.fsdecode(n)).is_file())
    packed = subprocess.run(["tar", "--null", "-T", "-", "-cf", "-"], cwd=ROOT, input=files, capture_output=True,
                            check=True).stdout
    dest.mkdir()
    subprocess.run(["tar", "-C", str(dest), "-xf", "-"], input=packed, check=True)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-qm", "piper-ops", "--no-verify")
    return _git(dest, "rev-parse", "HEAD").strip()


def _repository(repo: Path, files: int, hook: Path, rev: str) -> None:
    rng = random.Random(2)
    corpus = _text(40 << 20, 3)
    for i in range(files):
        folder = repo / f"d{i % 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        start = rng.randrange(0, len(corpus) - 4096)
        (folder / f"f{i:05d}.md").write_bytes(corpus[start:start + rng.randint(200, 4000)])
    (repo / ".piper-audit.yaml").write_text("terms:\n" + "".join(f"  - {{term: {t}, kind: name}}\n" for t in TERMS))
    (repo / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hook}\n    rev: {rev}\n    hooks:\n      - id: audit-piper-md\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "files", "--no-verify")


#: The least any hook in Python can do: start, and read every file it is given (what the audit must read).
READ_ONLY = """import os, sys
for name in sys.argv[1:]:
    fd = os.open(name, os.O_RDONLY)
    os.read(fd, os.fstat(fd).st_size + 1)
    os.close(fd)
"""


def _local_hook(name: str, entry: str) -> str:
    return (f"repos:\n  - repo: local\n    hooks:\n      - {{id: {name}, name: {name}, entry: '{entry}', "
            "language: system, types: [file]}\n")


#: pre-commit's own share: a hook that does nothing, given the same files the same way.
NOOP = _local_hook("noop", "true")


def main() -> int:
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--files", type=int, default=20000)
    cli.add_argument("--runs", type=int, default=5)
    args = cli.parse_args()
    pattern = "|".join(TERMS)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPER_", "PRE_COMMIT"))}
        env.update(PRE_COMMIT_HOME=str(base / "pre-commit-home"), PIP_DISABLE_PIP_VERSION_CHECK="1")
        rev = _hook_repo(base / "piper-ops")
        repo = base / "repo"
        _repository(repo, args.files, base / "piper-ops", rev)
        (base / "noop.yaml").write_text(NOOP)
        (base / "read_only.py").write_text(READ_ONLY)
        (base / "read-only.yaml").write_text(_local_hook("read-only", f"{sys.executable} {base / 'read_only.py'}"))
        grep_entry = f'env LC_ALL=C git grep -c -i -w -E "{pattern}" --'
        (base / "git-grep.yaml").write_text(_local_hook("git-grep", grep_entry))
        pre_commit = [sys.executable, "-m", "pre_commit"]
        start = time.perf_counter()
        subprocess.run(pre_commit + ["install-hooks"], cwd=repo, env=env, check=True, capture_output=True)
        install = time.perf_counter() - start
        genv = dict(env, LC_ALL="C")
        # Interleaved, best of each: the machine's load changes less between the three than across runs.
        ours = grep = noop = read_only = grep_hook = float("inf")
        for _ in range(args.runs):
            grep = min(grep, _timed(["git", "grep", "-c", "-i", "-w", "-E", pattern], repo, genv, 1)[0])
            mine, code = _timed(pre_commit + ["run", "--all-files"], repo, env, 1)
            ours = min(ours, mine)
            nothing = pre_commit + ["run", "-c", str(base / "noop.yaml"), "--all-files"]
            noop = min(noop, _timed(nothing, repo, env, 1)[0])
            reading = pre_commit + ["run", "-c", str(base / "read-only.yaml"), "--all-files"]
            read_only = min(read_only, _timed(reading, repo, env, 1)[0])
            grepping = pre_commit + ["run", "-c", str(base / "git-grep.yaml"), "--all-files"]
            grep_hook = min(grep_hook, _timed(grepping, repo, env, 1)[0])
        print(f"# pre-commit exit code: {code} (1: the corpus holds the terms, as bench_audit's does)", file=sys.stderr)
    print("| what | ours | baseline | ratio | goal |")
    print("|---|---|---|---|---|")
    print(f"| hook, `pre-commit run --all-files`, {args.files} files vs `git grep -c -i -w -E` | {ours:.2f} s "
          f"| {grep:.2f} s | {ours / grep:.2f}× | ≤ 1.5× |")
    print(f"| of which pre-commit itself (a hook that does nothing, same files) | {noop:.2f} s | {grep:.2f} s "
          f"| {noop / grep:.2f}× | — |")
    print(f"| the least a hook in Python can do (start, read every file given it; no scan) | {read_only:.2f} s "
          f"| {grep:.2f} s | {read_only / grep:.2f}× | — |")
    print(f"| `git grep` itself as the hook (pre-commit passes it the same files as pathspecs) | {ours:.2f} s "
          f"| {grep_hook:.2f} s | {ours / grep_hook:.2f}× | — |")
    print(f"| installing the hook's environment (once per `rev`, warm pip cache) | {install:.1f} s | — | — | — |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
