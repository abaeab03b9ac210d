"""SQL that both psql and the driver run, written once, psql's way (`:'name'` parameters).

A local export runs through the server's own psql, the driver path through psycopg (see
services/users/exports.py for why there are two); both run these very statements, so the two
write the same bytes and the same records. `render_sql` turns a statement into psycopg's style.
"""

from __future__ import annotations

import json
import re

#: A move of personal data (user_data_events); '' stands for NULL.
EVENT_SQL = (
    "INSERT INTO user_data_events (event, environment, user_id, username, username_sha256, actor, "
    "source_environment, source, checksum, details) VALUES (:'event', :'environment', "
    "nullif(:'user_id', '')::uuid, nullif(:'username', ''), nullif(:'username_sha256', ''), :'actor', "
    "nullif(:'source_environment', ''), nullif(:'source', ''), nullif(:'checksum', ''), :'details'::jsonb)"
)


def render_sql(statement: str) -> str:
    """Return a statement whose parameters are written psql's way (:'name') in psycopg's (%(name)s)."""
    return re.sub(r":'(\w+)'", r"%(\1)s", statement.replace("%", "%%"))


def export_check_sql(table: str) -> str:
    """Return the SELECT that checks an export can go ahead: one row if the user exists, else none.

    Columns: the database's environment stamp, its schema revision, the user's id, and whether the
    user has every key asked for. Parameters as payload_sql's, and :'stamp_key'.
    """
    return (
        "SELECT (SELECT value FROM public.piper_metadata WHERE key = :'stamp_key'), "
        "(SELECT version_num FROM public.alembic_version), id, "
        "(:'keys' = '' OR preferences ?& ARRAY(SELECT jsonb_array_elements_text(nullif(:'keys', '')::jsonb))) "
        f"FROM {table} WHERE username = :'username'"
    )


def payload_sql(table: str, fields: tuple[str, ...], with_learning_data: bool) -> str:
    """Return the SELECT whose columns, joined in order, are a user's export payload as JSON text.

    PostgreSQL writes the JSON itself: the user's profile fields, the preferences (only the keys
    asked for, if any) and the learning data, between the literal text that frames them. Joining
    texts, rather than building one jsonb value, spares PostgreSQL a copy of megabytes of
    preferences. Parameters: :'username', and :'keys', a JSON array of top-level keys or '' for all.
    """
    user = ", ".join(f"'{name}', {name}" for name in fields)
    learning = "coalesce(learning_data::text, 'null')" if with_learning_data else "'null'"
    return (
        "SELECT '{\"keys\": ' || coalesce(nullif(:'keys', ''), 'null') || ', \"learning_data\": ', "
        f"{learning}, ', \"preferences\": ', "
        "CASE WHEN :'keys' = '' THEN preferences::text ELSE "
        "(SELECT coalesce(jsonb_object_agg(key, value), '{}'::jsonb) FROM jsonb_each(preferences) "
        "WHERE nullif(:'keys', '')::jsonb ? key)::text END, "
        f"', \"user\": ', jsonb_build_object({user})::text, '}}' "
        f"FROM {table} WHERE username = :'username'"
    )


def keys_parameter(keys: list[str] | None) -> str:
    """Return the :'keys' parameter of payload_sql: a JSON array, or '' for every key."""
    return "" if keys is None else json.dumps(keys, ensure_ascii=False)
