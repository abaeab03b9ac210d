"""The command layer: every command declared once, with the ADR-040 scripts as its script door.

- _cli: `Command` and `Flag`, the two doors (`Command.main(argv)`, `invoke_task`), the one edge
- _environments: setup, status, teardown, db-start, db-stop, db-backup, db-restore (invoke only)
- one module per script (`python scripts/<name>.py`), each declaring its `COMMAND` and `main(argv)`

tasks.py builds the invoke collection from these declarations.
"""
