"""psql sessions on a real server: any text passes intact, no secret in arguments, the first error stops."""

from __future__ import annotations

import psutil

from services import credentials
from services.postgres import psql_sessions, servers


def test_a_psql_session_passes_any_text_intact_and_stops_at_the_first_error(alpha_env) -> None:
    profile, project = alpha_env
    server = servers.locate(profile, project)
    owner = credentials.target(profile, project, "owner")
    tricky = ["it's", "back\\slash\\", "new\nline\ttab\r", ":'colon' `tick` $1", "ünï ✓ 🎉", "\x01\x7f", ""]
    with psql_sessions.psql_session(server, owner.dbname, owner.user, owner.password, variables={"given": tricky[0]}) as psql:
        for index, value in enumerate(tricky):
            psql.set(f"v{index}", value)
        fields = psql.query_row("SELECT :'given', " + ", ".join(
            f"encode(convert_to(:'v{i}', 'UTF8'), 'hex')" for i in range(len(tricky))))
        assert fields is not None
        assert bytes(fields[0]) == tricky[0].encode()
        assert [bytes(f).decode() for f in fields[1:]] == [v.encode().hex() for v in tricky]
        running = psutil.Process(psql._process.pid)  # the password is in neither its arguments nor its environment
        assert owner.password not in " ".join(running.cmdline())
        assert owner.password not in " ".join(running.environ().values()) and "PGPASSFILE" in running.environ()
        assert psql.query_row("SELECT no_such_column FROM pg_class") is None  # ON_ERROR_STOP: psql ends here
        failure = psql.finish()
    assert failure is not None and "no_such_column" in failure
