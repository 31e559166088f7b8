"""Accounts, API keys and credits: the domain. Nothing here knows about HTTP.

Credits change only in `credits.py`; read it to check the rules. Passwords for the account
pages are in `passwords.py`, and what the account page shows of an account's history in
`usage.py`; how a request ended, in words (never an HTTP status), in `outcomes.py`.
"""

from . import credits, passwords, usage
from .accounts import AccountInfo, count_accounts, create_account, get_account, get_account_by_id, normalise_email
from .credits import Reservation
from .keys import KeyInfo, NewKey, create_key, list_keys, revoke_key, verify_key

__all__ = [
    "AccountInfo", "KeyInfo", "NewKey", "Reservation", "count_accounts", "create_account", "create_key",
    "credits", "get_account", "get_account_by_id", "list_keys", "normalise_email", "passwords", "revoke_key",
    "usage", "verify_key",
]
