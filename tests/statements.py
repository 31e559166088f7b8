"""What SQL a block of code sends: to check that a read path writes nothing and reads a row once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from pixeldrop.storage import Database

_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


class Statements(list[str]):
    """The statements sent, in order (transaction control such as BEGIN left out)."""

    def writes(self, table: str | None = None) -> list[str]:
        return [sql for sql in self if _WRITE.match(sql) and (table is None or _names(sql, table))]

    def reads(self, table: str) -> list[str]:
        return [sql for sql in self if sql.lstrip().upper().startswith("SELECT") and _names(sql, table)]


def _names(sql: str, table: str) -> bool:
    return re.search(rf"\b(FROM|JOIN|UPDATE|INTO)\s+\"?{table}\"?\b", sql, re.IGNORECASE) is not None


@contextmanager
def statements(db: Database) -> Iterator[Statements]:
    """Every SELECT, INSERT, UPDATE and DELETE sent to `db` inside the block, by any thread."""
    sent = Statements()

    def record(_connection, _cursor, sql, *_args) -> None:
        if re.match(r"\s*(SELECT|INSERT|UPDATE|DELETE)\b", sql, re.IGNORECASE):
            sent.append(sql)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
