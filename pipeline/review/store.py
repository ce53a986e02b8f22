"""ReviewStore: the review database opened once, with its repositories sharing the one connection.

``store.cases`` (cases.py), ``store.claims`` (claims.py: who holds which new case), ``store.plates``
(plates.py: officers' corrections of a plate), ``store.accounts``
(accounts.py: users and sessions) and ``store.audit`` (audit_log.py) each own their tables or columns,
which ``store.stats`` (stats.py: figures for 考评) and ``store.open_cases`` (case_map.py: the map's
cases) only read; db.py holds the schema and the transaction that pairs every change with its audit
entry. Given a ``HeadSigner`` (the service has one), the store signs the chain's head now and after
every committed entry (signed_heads.py).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.review.accounts import AccountRepository
from pipeline.review.audit_log import AuditLog
from pipeline.review.case_map import OpenCases
from pipeline.review.cases import CaseRepository
from pipeline.review.claims import ClaimRepository
from pipeline.review.db import ReviewDatabase
from pipeline.review.plates import PlateRepository
from pipeline.review.signed_heads import HeadSigner
from pipeline.review.stats import CaseStatistics


class ReviewStore:
    def __init__(self, path: str | Path, signer: HeadSigner | None = None) -> None:
        self._db = ReviewDatabase(path)
        self.cases = CaseRepository(self._db)
        self.claims = ClaimRepository(self._db)
        self.plates = PlateRepository(self._db)
        self.accounts = AccountRepository(self._db)
        self.audit = AuditLog(self._db)
        self.stats = CaseStatistics(self._db)  # reads the cases table for 考评, writes nothing
        self.open_cases = OpenCases(self._db)  # reads it for the map (case_map.py)
        if signer is not None:
            signer.catch_up(self.audit.head())
            self._db.entry_committed = signer.publish_committed

    def close(self) -> None:
        self._db.close()
