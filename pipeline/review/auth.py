"""Who is asking: password checks (argon2id), session tokens, and the FastAPI dependencies on them.

One session mechanism serves both clients: the API takes ``Authorization: Bearer <token>``, the
officers' page the same token in an HttpOnly, SameSite=Strict cookie. Tokens are random and
stored only as their sha256, with an expiry and the time of their latest request (the idle
timeout). A user whose password an admin reset holds a session that can only change it.

CSRF, for the cookie only (a bearer token is never sent by a browser on its own): the cookie is
SameSite=Strict, so no other site's request carries it; and every unsafe request authenticated by
the cookie must also carry the session's CSRF token in ``X-CSRF-Token`` (the page's scripts) or a
``csrf_token`` form field (the page's plain forms), and an ``Origin``, when the browser sends one,
naming this host.
"""

# No `from __future__ import annotations` here: FastAPI must evaluate the closure's dependency
# annotation in _role_check, which a string annotation would hide.
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from pipeline.review.accounts import MIN_PASSWORD_LENGTH, Session, User
from pipeline.review.errors import Invalid
from pipeline.review.login_throttle import Refusal
from pipeline.review.services import ReviewServices, services
from pipeline.review.vocabulary import ROLE_LABELS, AccountRole

SESSION_COOKIE = "patrol_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FORM_FIELD = "csrf_token"
# Sent by a page's script when it polls on its own: such a request keeps no session from going idle.
POLL_HEADER = "X-Patrol-Poll"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Each argon2id hash takes 64 MiB (the library's memory cost) while it runs: however many log in at
# once, at most this many hashes run, so logins cannot take more than 4 x 64 MiB.
MAX_CONCURRENT_HASHES = 4
# A login waits this long for a free hash before it is answered 503; the waiting holds a worker thread.
HASH_WAIT_S = 2.0

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Checked when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))
_hash_slots = threading.BoundedSemaphore(MAX_CONCURRENT_HASHES)

bearer_scheme = HTTPBearer(auto_error=False, description="A token from POST /api/login")
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="The officers' page session")


class LoginRefused(Exception):
    """A login turned away whatever its password: a lockout (429), too many at once (503), a disabled
    account (403, no Retry-After: waiting does not help)."""

    def __init__(self, status_code: int, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status_code, self.message, self.retry_after_s = status_code, message, retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"密码至少需要 {MIN_PASSWORD_LENGTH} 个字符")
    with _hash_slots:  # an admin or the CLI, never an anonymous caller: it may wait its turn
        return _hasher.hash(password)


@contextmanager
def _hash_slot_for_login() -> Iterator[None]:
    if not _hash_slots.acquire(timeout=HASH_WAIT_S):
        raise LoginRefused(status.HTTP_503_SERVICE_UNAVAILABLE, "登录的人太多，请稍后再试", retry_after_s=5)
    try:
        yield
    finally:
        _hash_slots.release()


def check_password(review: ReviewServices, name: str, password: str) -> User | None:
    """The user when ``password`` is theirs, else None; upgrades an outdated hash on success.

    LoginRefused (503) when every hash slot stays busy for HASH_WAIT_S.
    """
    found = review.store.accounts.password_hash(name)
    with _hash_slot_for_login():
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


def log_in(review: ReviewServices, name: str, password: str, address: str) -> User | None:
    """check_password behind the lockouts of login_throttle, with every failure and lockout audited.

    None for a wrong name or password; LoginRefused for a locked account or address (429), also
    when this failure locks it, when too many log in at once (503), or for a disabled account (403).
    """
    throttle = review.login_throttle
    refusal = throttle.refusal(name, address)
    if refusal is not None:
        if refusal.first_of_its_lockout:
            _audit_login_trouble(review, "login_refused", name, address, locked=refusal.kind)
        raise _too_many(refusal)
    user = check_password(review, name, password)
    if user is not None and not user.active:
        # Only the right password hears that the account is disabled, so a guesser learns nothing; it
        # still counts as a failure, or a departed officer could fill the audit log with refusals.
        lockout = throttle.record_failure(name, address)
        _audit_login_trouble(review, "login_refused", name, address, locked="disabled")
        if lockout is not None:
            raise _too_many(lockout)
        raise LoginRefused(status.HTTP_403_FORBIDDEN, "该账号已停用，请联系管理员")
    if user is not None:
        throttle.record_success(name)
        return user
    lockout = throttle.record_failure(name, address)
    _audit_login_trouble(review, "login_failed", name, address, locked=lockout.kind if lockout else None)
    if lockout is not None:
        raise _too_many(lockout)
    return None


def _audit_login_trouble(review: ReviewServices, action: str, name: str, address: str, locked: str | None) -> None:
    # Nobody is logged in, so the actor is "anonymous". A name that is no account is left out: the
    # log is append-only for good, and what was typed as a name is now and then a password.
    known = review.store.accounts.password_hash(name) is not None
    detail = {"name": name if known else None, "address": address, "locked": locked}
    review.store.audit.record_event("anonymous", action, None, detail)


def _too_many(refusal: Refusal) -> LoginRefused:
    return LoginRefused(status.HTTP_429_TOO_MANY_REQUESTS, refusal.message, refusal.retry_after_s)


def client_address(request: Request) -> str:
    """The caller's address as the server saw it; behind a proxy, uvicorn's --forwarded-allow-ips
    must name the proxy, or every officer counts as the proxy's one address."""
    return request.client.host if request.client else "unknown"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated request: who, through which session, and whether by cookie (a browser)."""

    user: User
    session: Session
    token: str
    by_cookie: bool


def change_password(review: ReviewServices, caller: Caller, current: str, new: str, address: str) -> None:
    """The caller's own new password, once ``current`` checks out; their other sessions end.

    Invalid for a wrong current password or an unchanged one, ValueError for one too short,
    LoginRefused as for log_in.
    """
    # Checked as a login, behind its lockouts: a stolen session must not become a way to guess passwords.
    if log_in(review, caller.user.name, current, address) is None:
        raise Invalid("当前密码错误")
    if new == current:
        raise Invalid("新密码不能与当前密码相同")
    review.store.accounts.change_own_password(caller.user.name, hash_password(new), keeping_token=caller.token)


class LoginRequired(Exception):
    """Raised by page routes instead of a 401, so the app can send the browser to the login page."""


class PasswordChangeRequired(Exception):
    """Raised by page routes for a user whose password was reset, so the app sends them to change it."""


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
    session = review.store.accounts.session(token, review.settings.session_idle_timeout_s,
                                            active=POLL_HEADER not in request.headers)
    if session is None:
        return None
    if by_cookie and request.method not in SAFE_METHODS:
        presented = request.headers.get(CSRF_HEADER)
        if presented is None and request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            presented = (await request.form()).get(CSRF_FORM_FIELD)
        if not (same_origin(request) and isinstance(presented, str)
                and secrets.compare_digest(presented, session.csrf_token)):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "页面已过期或请求来源不明（CSRF 校验未通过），请刷新页面后重试")
    return Caller(session.user, session, token, by_cookie)


async def api_session(caller: Annotated[Caller | None, Depends(_caller_or_none)]) -> Caller:
    """Any logged-in user, also one who must change their password first: for who-am-I, log out and
    changing the password."""
    if caller is None:
        raise _unauthorised("请先登录：POST /api/login 取得令牌，再以 Authorization: Bearer <token> 发送请求")
    return caller


async def api_caller(caller: Annotated[Caller, Depends(api_session)]) -> Caller:
    if caller.user.must_change_password:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "管理员已重置您的密码，请先设置自己的新密码（POST /api/me/password）")
    return caller


async def page_session(caller: Annotated[Caller | None, Depends(_caller_or_none)]) -> Caller:
    if caller is None:
        raise LoginRequired
    return caller


async def page_caller(caller: Annotated[Caller, Depends(page_session)]) -> Caller:
    if caller.user.must_change_password:
        raise PasswordChangeRequired
    return caller


def _role_check(roles: frozenset[AccountRole], authenticate: Callable) -> Callable:
    async def check(caller: Annotated[Caller, Depends(authenticate)]) -> Caller:
        if caller.user.role not in roles:
            allowed = "、".join(ROLE_LABELS[role] for role in AccountRole if role in roles)
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"此操作仅限{allowed}，您的角色是{ROLE_LABELS[caller.user.role]}")
        return caller

    return check


def api_roles(*roles: AccountRole) -> Callable:
    """A dependency that lets only these roles through (401 without a user, 403 with another role)."""
    return _role_check(frozenset(roles), api_caller)


def page_roles(*roles: AccountRole) -> Callable:
    return _role_check(frozenset(roles), page_caller)


REVIEWERS = (AccountRole.OFFICER, AccountRole.SUPERVISOR)
CAMERA_VIEWERS = (AccountRole.SUPERVISOR, AccountRole.ADMIN)
