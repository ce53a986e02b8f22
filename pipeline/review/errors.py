"""What the review store refuses, by kind; each kind is answered with its own HTTP status and
``{"detail": "<message>", "code": "<kind>"}`` (schemas.ErrorOut), which the routes declare. The
detail is Chinese, for the officer who reads it; the code stays English, for the scripts that
branch on it. 422 is left to FastAPI's validation of the request itself, with its list of errors
naming each bad field."""

from __future__ import annotations

from datetime import tzinfo
from typing import ClassVar


class ReviewError(Exception):
    """A request the store refuses; subclasses say which HTTP answer fits."""

    status_code: ClassVar[int]
    code: ClassVar[str]

    def describe(self, zone: tzinfo) -> str:
        """The message on the district's clock; only refusals that name a time need ``zone``."""
        return str(self)


class NotFound(ReviewError):
    status_code = 404
    code = "not_found"


class Conflict(ReviewError):
    """The case (or name) is not in a state that allows this, e.g. deciding a case twice."""

    status_code = 409
    code = "conflict"


class NotAllowed(ReviewError):
    """This user may not do this to this case (e.g. an officer deciding a case assigned to another)."""

    status_code = 403
    code = "not_allowed"


class Invalid(ReviewError):
    """The request is well formed but breaks a business rule (unknown duplicate target, missing reason text)."""

    status_code = 400
    code = "invalid"


class TooLarge(ReviewError):
    """An uploaded file over its limit (a disposal photo); the body as a whole has BodyLimit's."""

    status_code = 413
    code = "too_large"


class UnsupportedMedia(ReviewError):
    """An uploaded file that is not of a kind the route takes, judged by its bytes (a photo that is no JPEG or PNG)."""

    status_code = 415
    code = "unsupported_media"


class NoSuchCase(NotFound):
    def __init__(self, case_id: str) -> None:
        super().__init__(f"没有案件 {case_id}")
