"""What the review store refuses, by kind; each kind is answered with its own HTTP status and
``{"detail": "<message>"}`` (schemas.ErrorOut), which the routes declare. 422 is left to FastAPI's
validation of the request itself, with its list of errors naming each bad field."""

from __future__ import annotations

from typing import ClassVar


class ReviewError(Exception):
    """A request the store refuses; subclasses say which HTTP answer fits."""

    status_code: ClassVar[int]


class NotFound(ReviewError):
    status_code = 404


class Conflict(ReviewError):
    """The case (or name) is not in a state that allows this, e.g. deciding a case twice."""

    status_code = 409


class NotAllowed(ReviewError):
    """This user may not do this to this case (e.g. an officer deciding a case assigned to another)."""

    status_code = 403


class Invalid(ReviewError):
    """The request is well formed but breaks a business rule (unknown duplicate target, missing reason text)."""

    status_code = 400
