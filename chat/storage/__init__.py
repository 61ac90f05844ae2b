"""Durable data: schema, statements, the store and its message log, migrations."""
