"""Storage: SQLAlchemy tables, the engine, and migrations applied on first use."""

from .database import Database, changed_rows
from .models import (
    Account,
    ApiKey,
    Base,
    BrowserSession,
    IdempotencyKey,
    ImageRequest,
    Job,
    JobResult,
    LedgerEntry,
    PasswordReset,
    PlaygroundImage,
    StoredImage,
    WebhookDelivery,
    as_utc,
    utcnow,
)

__all__ = ["Account", "ApiKey", "Base", "BrowserSession", "Database", "IdempotencyKey", "ImageRequest", "Job",
           "JobResult", "LedgerEntry", "PasswordReset", "PlaygroundImage", "StoredImage", "WebhookDelivery",
           "as_utc", "changed_rows", "utcnow"]
