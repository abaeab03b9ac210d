"""The command layer: every command declared once, with the ADR-040 scripts as its script door.

- _cli: `Command` and `Flag`, the two doors (`Command.main(argv)`, `invoke_task`), the one edge
- _commands: the declaration of every command (name, summary, flags, the function it runs)
- _environments: what setup, status, teardown, db-start, db-stop, db-backup and db-restore do
  (invoke is their only door)
- one module per script (`python scripts/<name>.py`): its `run(args)`, `COMMAND` and `main(argv)`

tasks.py builds the invoke collection from scripts/_commands.py.
"""
