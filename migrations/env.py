"""Alembic environment. The server calls it with a live connection (chat.storage.migrate); it does not
open its own, so the same code serves SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import context

from chat.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `python -m chat migrate`, which passes a connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
