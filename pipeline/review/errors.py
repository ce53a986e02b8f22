"""What the review store refuses, by kind; the app answers each kind with its own HTTP status."""

from __future__ import annotations


class ReviewError(Exception):
    """A request the store refuses; subclasses say which HTTP answer fits."""


class NotFound(ReviewError):
    pass


class Conflict(ReviewError):
    """The case (or name) is not in a state that allows this, e.g. deciding a case twice."""


class NotAllowed(ReviewError):
    """This user may not do this to this case (e.g. an officer deciding a case assigned to another)."""


class Invalid(ReviewError):
    """The request names something that does not fit (unknown duplicate target, missing reason text)."""
