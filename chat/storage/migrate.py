"""Alembic, driven from code: the server upgrades its database to head at start-up.

There is no alembic.ini (the top level of the project is fixed); the configuration is built here
and `migrations/env.py` reuses the connection it is handed.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from chat.settings import PROJECT_ROOT

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection) -> None:
    """Run inside `AsyncConnection.run_sync`; the caller's transaction commits the result."""
    command.upgrade(alembic_config(connection), "head")
