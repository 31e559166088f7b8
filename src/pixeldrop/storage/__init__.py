"""Storage: SQLAlchemy tables, the engine, and migrations applied on first use."""

from .database import Database, changed_rows
from .models import Account, ApiKey, Base, BrowserSession, ImageRequest, LedgerEntry, utcnow

__all__ = ["Account", "ApiKey", "Base", "BrowserSession", "Database", "ImageRequest", "LedgerEntry", "changed_rows",
           "utcnow"]
