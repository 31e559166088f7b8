"""An owner closes their account, in one transaction.

It lives beside the packages it spans, not in accounts/: pixeldrop.jobs depends on accounts (a
job's credits), so the account side cannot call the jobs side.

In that one transaction the account loses what lets anyone act for it or read its content: its
password (nobody signs in), its live API keys (revoked, as the operator's revoke does), its
browser sessions and reset links, its playground images, the prompts of its requests and of its
ended jobs, and its webhook signing secret; its queued jobs are canceled and refunded (jobs
already running finish and are charged, as the owner asked). Either all of that happens or none
of it. Its row stays, with its balance, ledger and usage, for the operator's records
(`pixeldrop credits`, payments), and so does its address: a deleted address cannot sign up
again (sign-up answers as for any taken address), which would otherwise be a way to collect the
free credits twice. The operator may open it again with `pixeldrop accounts set-password`.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, update

from pixeldrop.errors import AccountNotFound
from pixeldrop.jobs import store
from pixeldrop.storage import (
    Account,
    ApiKey,
    BrowserSession,
    Database,
    ImageRequest,
    PasswordReset,
    PlaygroundImage,
    changed_rows,
    utcnow,
)


def delete_account(db: Database, account_id: int, keep: timedelta) -> None:
    """Close the account (AccountNotFound if it is missing or closed already). `keep`: how long
    job results are kept, for its canceled jobs' webhook events."""
    now = utcnow()
    with db.session() as session:
        closed = changed_rows(session, update(Account).where(Account.id == account_id, Account.deleted_at.is_(None))
                              .values(deleted_at=now, password_hash=None, webhook_secret=None))
        if closed != 1:
            raise AccountNotFound("No such account.")
        session.execute(update(ApiKey).where(ApiKey.account_id == account_id, ApiKey.revoked_at.is_(None))
                        .values(revoked_at=now))
        store.cancel_queued(session, account_id, keep)
        session.execute(update(ImageRequest).where(ImageRequest.account_id == account_id,
                                                   ImageRequest.prompt.is_not(None)).values(prompt=None))
        store.forget_ended_prompts(session, account_id)
        for table in (BrowserSession, PasswordReset, PlaygroundImage):
            session.execute(delete(table).where(table.account_id == account_id))
