"""What every script shares when it runs as a command: exit codes, clean-up on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.support.projects import REPO

_SLOW_COMMAND = """
import sys, tempfile, time
from pathlib import Path
from scripts import _cli

def main():
    with tempfile.TemporaryDirectory(dir=sys.argv[1]) as private:
        (Path(private) / "personal.json").write_text("{}")
        print("ready", flush=True)
        time.sleep(60)
    return 0

_cli.run_command(main)
"""


def test_sigterm_unwinds_a_command_so_its_temporary_files_go(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", _SLOW_COMMAND, str(tmp_path)], cwd=REPO,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    assert len(list(tmp_path.iterdir())) == 1
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_a_command_exits_at_once_with_its_code_and_everything_it_printed() -> None:
    # Standard output is a pipe here, so block-buffered: exit_now must flush it before os._exit.
    done = subprocess.run([sys.executable, "-c", "from scripts import _cli; _cli.run_command(lambda: print('done') or 3)"],
                          cwd=REPO, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (3, "done\n", "")
