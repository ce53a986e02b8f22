"""ReviewStore: the review database opened once, with its repositories sharing the one connection.

``store.cases`` (cases.py), ``store.accounts`` (accounts.py: users and sessions) and
``store.audit`` (audit_log.py) each own their tables; db.py holds the schema and the transaction
that pairs every change with its audit entry.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.review.accounts import AccountRepository
from pipeline.review.audit_log import AuditLog
from pipeline.review.cases import CaseRepository
from pipeline.review.db import ReviewDatabase


class ReviewStore:
    def __init__(self, path: str | Path) -> None:
        self._db = ReviewDatabase(path)
        self.cases = CaseRepository(self._db)
        self.accounts = AccountRepository(self._db)
        self.audit = AuditLog(self._db)

    def close(self) -> None:
        self._db.close()
