"""Accounts: one normalisation of email addresses, for every way in."""

from __future__ import annotations

import pytest

from pixeldrop import accounts
from pixeldrop.accounts import passwords
from pixeldrop.errors import AccountExists

SPELLINGS = ["victim@ｅxample.com", "VICTIM@EXAMPLE.COM", " Victim@Ｅxample.Com "]  # fullwidth e and E


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_every_spelling_of_an_address_is_the_same_account(db, spelling):
    accounts.create_account(db, "victim@example.com", 10)
    assert accounts.normalise_email(spelling) == "victim@example.com"
    assert accounts.normalise_email(accounts.normalise_email(spelling)) == "victim@example.com"
    assert accounts.get_account(db, spelling).email == "victim@example.com"
    with pytest.raises(AccountExists):
        accounts.create_account(db, spelling, 10)  # the CLI's way in
    with pytest.raises(AccountExists):
        passwords.sign_up(db, spelling, "correct horse battery", 10)  # the sign-up page's
    assert accounts.count_accounts(db) == 1
