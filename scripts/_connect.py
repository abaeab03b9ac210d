"""What `invoke env` and `invoke psql` do: an environment's connection variables, and psql on its database.

`invoke env` imports no database driver or ORM (it only reads `.env` and where the server lives),
so that `eval "$(invoke env --format shell --show-password)"` is quick.
"""

from __future__ import annotations

import argparse
import sys

from scripts import _cli
from services import connection_info


def run_env(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    info = connection_info.connection_info(profile, project, args.role)
    sys.stdout.write(connection_info.render(info.variables(show_password=args.show_password), args.format))
    stale = connection_info.stale_env_file_url(profile, project)
    if stale:
        print(f"warning: {stale}", file=sys.stderr)
    if not args.show_password:
        print(f"note: the password of {info.user} is hidden ({connection_info.MASK}); pass --show-password to print "
              "it (in DATABASE_URL and PGPASSWORD)", file=sys.stderr)
    return 0


def run_psql(args: argparse.Namespace) -> int:
    profile, project = _cli.selected_profile(args.env)
    extra = [*(["--command", args.command] if args.command else []), *_invoke_remainder()]
    return connection_info.open_psql(profile, project, args.role, extra)


def _invoke_remainder() -> list[str]:
    """Return what followed `--` on invoke's command line (`invoke psql -- -c 'select 1'`), each word as typed.

    invoke keeps it only as one string joined by spaces; the words themselves are in sys.argv.
    """
    program = getattr(sys.modules.get("invoke.main"), "program", None)
    core = getattr(program, "core", None)
    if not getattr(core, "remainder", "") or "--" not in sys.argv:
        return []
    return sys.argv[sys.argv.index("--") + 1:]
