"""An environment's database, reached with explicit settings; nothing here reads `.env` or profiles.

- connection: `Target` (where and as whom), connect, engine, a hosted URL read into a Target
- models: the tables (SQLAlchemy 2 typed models; migrations/ builds them)
- roles: role names, the bootstrap of roles and database, grants, the application role's limits
- stamp: which environment a database belongs to (invariant 1)
- schema: Alembic driven from code on the caller's connection
- sessions: a user-data transaction with its acting user (row-level security)
- events: the record of every move of personal data
- statements: SQL that psql and the driver both run, written once

It imports nothing else of services/ but the domain's errors (services/errors.py).
"""
