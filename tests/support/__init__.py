"""What the tests share besides fixtures: temporary projects and servers, subprocess helpers, fakes.

- projects: temporary piper-ops projects on free ports, set up the way `invoke setup` does, and
  their servers removed afterwards
- cli: running the invoke and script doors as real subprocesses, in a project and nowhere else
- fakes: database-free projects with a fake profile (the audit and PIPER.md backup tests)
- databases: small queries the tests use to look at what a command did
- temp_root: the one private temporary directory a test run keeps everything in
- tls_proxy: a TLS front for a local server, standing in for hosted production

conftest.py turns these into fixtures; benchmarks/ use them too. Nothing here creates a file or
a directory when imported.
"""
