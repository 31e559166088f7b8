"""Storage: SQLAlchemy tables, the engine, and migrations applied on first use."""

from .database import Database
from .models import Account, ApiKey, Base, ImageRequest, LedgerEntry, utcnow

__all__ = ["Account", "ApiKey", "Base", "Database", "ImageRequest", "LedgerEntry", "utcnow"]
