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
    utcnow,
)

__all__ = ["Account", "ApiKey", "Base", "BrowserSession", "Database", "IdempotencyKey", "ImageRequest", "Job",
           "JobResult", "LedgerEntry", "PasswordReset", "PlaygroundImage", "StoredImage", "WebhookDelivery",
           "changed_rows", "utcnow"]
