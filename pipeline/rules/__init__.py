"""Rules: zone containment, dwell and one case per episode."""

from .case_id import case_id
from .engine import Candidate, RuleEngine

__all__ = ["Candidate", "RuleEngine", "case_id"]
