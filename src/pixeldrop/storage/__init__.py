"""Storage: SQLAlchemy tables, the engine, and migrations applied on first use."""

from .database import Database
from .models import Account, ApiKey, Base, BrowserSession, ImageRequest, LedgerEntry, utcnow

__all__ = ["Account", "ApiKey", "Base", "BrowserSession", "Database", "ImageRequest", "LedgerEntry", "utcnow"]
