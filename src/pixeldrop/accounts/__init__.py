"""Accounts, API keys and credits: the domain. Nothing here knows about HTTP.

Credits change only in `credits.py`; read it to check the rules.
"""

from . import credits
from .accounts import AccountInfo, count_accounts, create_account, get_account, normalise_email
from .credits import Reservation
from .keys import KeyInfo, NewKey, create_key, list_keys, revoke_key, verify_key

__all__ = [
    "AccountInfo", "KeyInfo", "NewKey", "Reservation", "count_accounts", "create_account", "create_key",
    "credits", "get_account", "list_keys", "normalise_email", "revoke_key", "verify_key",
]
