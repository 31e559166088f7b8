"""Alembic environment: pixeldrop always hands Alembic an open connection (see database.py)."""

from alembic import context

from pixeldrop.storage.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
