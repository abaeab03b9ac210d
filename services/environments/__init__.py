"""Environments as a whole, one module per command family.

- setup: `invoke setup`, the one command of ADR-040's onboarding
- steps: the profile's setup steps (scripts), planned before setup changes anything
- provisioning: the database brought to the profile's state (roles, schema, stamp, limits)
- lifecycle: start, stop, back up, restore, tear down
- status: every environment at a glance
- locking: one command at a time per environment
"""
