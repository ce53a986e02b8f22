"""Who is asking: password checks (argon2id), session tokens, and the FastAPI dependencies on them.

One session mechanism serves both clients: the API takes ``Authorization: Bearer <token>``, the
officers' page the same token in an HttpOnly, SameSite=Strict cookie. Tokens are random and
stored only as their sha256, with an expiry.

CSRF, for the cookie only (a bearer token is never sent by a browser on its own): the cookie is
SameSite=Strict, so no other site's request carries it; and every unsafe request authenticated by
the cookie must also carry the session's CSRF token in ``X-CSRF-Token`` (the page's scripts) or a
``csrf_token`` form field (the page's plain forms), and an ``Origin``, when the browser sends one,
naming this host.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the closure's dependency
# annotation in _role_check, which a string annotation would hide.
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from pipeline.review.accounts import Session, User
from pipeline.review.services import ReviewServices, services
from pipeline.review.vocabulary import AccountRole

SESSION_COOKIE = "patrol_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Checked when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

bearer_scheme = HTTPBearer(auto_error=False, description="A token from POST /api/login")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="The officers' page session")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def check_password(review: ReviewServices, name: str, password: str) -> User | None:
    """The user when ``password`` is theirs, else None; upgrades an outdated hash on success."""
    found = review.store.accounts.password_hash(name)
    try:
        _hasher.verify(found[1] if found else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if found is None:
        return None
    user, stored = found
    if _hasher.check_needs_rehash(stored):
        review.store.accounts.replace_password_hash(user.name, _hasher.hash(password))
    return user


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: who, through which session, and whether by cookie (a browser)."""

    user: User
    session: Session
    token: str
    by_cookie: bool


class LoginRequired(Exception):
    """Raised by page routes instead of a 401, so the app can send the browser to the login page."""


def _unauthorised(message: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"})


def same_origin(request: Request) -> bool:
    """True unless the browser says the request comes from another site."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host")


async def _caller_or_none(
    request: Request,
    review: Annotated[ReviewServices, Depends(services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    cookie_token: Annotated[str | None, Security(cookie_scheme)],
) -> Caller | None:
    if credentials is not None:
        token, by_cookie = credentials.credentials, False
    elif cookie_token:
        token, by_cookie = cookie_token, True
    else:
        return None
    session = review.store.accounts.session(token)
    if session is None:
        return None
    if by_cookie and request.method not in SAFE_METHODS:
        presented = request.headers.get(CSRF_HEADER)
        if presented is None and request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            presented = (await request.form()).get(CSRF_FORM_FIELD)
        if not (same_origin(request) and isinstance(presented, str)
                and secrets.compare_digest(presented, session.csrf_token)):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token for a cookie session")
    return Caller(session.user, session, token, by_cookie)


async def api_caller(caller: Annotated[Caller | None, Depends(_caller_or_none)]) -> Caller:
    if caller is None:
        raise _unauthorised("log in first: POST /api/login, then send Authorization: Bearer <token>")
    return caller


async def page_caller(caller: Annotated[Caller | None, Depends(_caller_or_none)]) -> Caller:
    if caller is None:
        raise LoginRequired
    return caller


def _role_check(roles: frozenset[AccountRole], authenticate: Callable) -> Callable:
    async def check(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if caller.user.role not in roles:
            allowed = ", ".join(sorted(role.value for role in roles))
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"needs the role {allowed}; you are {caller.user.role}")
        return caller

    return check


def api_roles(*roles: AccountRole) -> Callable:
    """A dependency that lets only these roles through (401 without a user, 403 with another role)."""
    return _role_check(frozenset(roles), api_caller)


def page_roles(*roles: AccountRole) -> Callable:
    return _role_check(frozenset(roles), page_caller)


REVIEWERS = (AccountRole.OFFICER, AccountRole.SUPERVISOR)
CAMERA_VIEWERS = (AccountRole.SUPERVISOR, AccountRole.ADMIN)
