"""Users of an environment and their personal data, one module per operation.

- store: where an environment keeps its users, the user-data session, finding a user
- accounts: create, find, delete
- personal_data: migrate a personal-data file into a user's preferences
- exports: one user's data as a checksummed document
- imports: plan, then apply, an import with consent
- invitations: the hosted production environment's single-use invitations
- documents: the personal-data file and the export format, and how they merge (no database)

Local environments keep users in `alpha_users`; the hosted production environment in `users`
(ADR-040 "Migration Path"). Every write runs in one transaction together with its record in
`user_data_events`, so a change and its record exist together or not at all. The personal-data
paths use the driver directly rather than the ORM: a user's preferences may be megabytes of
JSON, and these paths stay within a small factor of psql fetching the same row.
"""
