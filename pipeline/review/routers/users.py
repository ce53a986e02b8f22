"""Review accounts, for admins: add, disable and enable, reset a password, change a role, set the
姓名 and 执法证号 that decisions record, end sessions.

Each change is audited with the admin as actor; disabling, a reset and revoking end the account's
sessions at once. The last active admin cannot be disabled or demoted (409).
"""

from __future__ import annotations

from fastapi import APIRouter, status

from pipeline.review.auth import hash_password
from pipeline.review.routers.dependencies import FORBIDDEN, Admin, Review, UserName, bad_request, refusal
from pipeline.review.schemas import AccountOut, NewUserIn, PasswordResetIn, ProfileIn, RoleIn, SessionsRevokedOut

router = APIRouter(prefix="/users", tags=["users"])

USER_ERRORS = {**FORBIDDEN, **refusal(404, "No such user")}
LAST_ADMIN = refusal(409, "It is the last active admin")


@router.get("", response_model=list[AccountOut], responses=FORBIDDEN)
def users(caller: Admin, review: Review) -> list[AccountOut]:
    return [AccountOut.of(user) for user in review.store.accounts.users()]


@router.post("", response_model=AccountOut, status_code=status.HTTP_201_CREATED,
             responses={**FORBIDDEN, **bad_request(), **refusal(409, "The name or the badge number is taken")})
def add_user(body: NewUserIn, caller: Admin, review: Review) -> AccountOut:
    return AccountOut.of(review.store.accounts.add_user(
        body.name, body.role, hash_password(body.password), actor=caller.user.name, display_name=body.display_name,
        badge_number=body.badge_number))


@router.post("/{name}/disable", response_model=AccountOut, responses={**USER_ERRORS, **LAST_ADMIN},
             summary="停用: the account cannot log in and its sessions end now")
def disable(name: UserName, caller: Admin, review: Review) -> AccountOut:
    return AccountOut.of(review.store.accounts.set_active(name, False, actor=caller.user.name))


@router.post("/{name}/enable", response_model=AccountOut, responses=USER_ERRORS, summary="启用 a disabled account")
def enable(name: UserName, caller: Admin, review: Review) -> AccountOut:
    return AccountOut.of(review.store.accounts.set_active(name, True, actor=caller.user.name))


@router.post("/{name}/password", response_model=AccountOut, responses={**USER_ERRORS, **bad_request()},
             summary="重置密码: a one-time password, to be changed at the next login; the sessions end")
def reset_password(name: UserName, body: PasswordResetIn, caller: Admin, review: Review) -> AccountOut:
    return AccountOut.of(review.store.accounts.set_password(name, hash_password(body.password),
                                                            actor=caller.user.name, must_change=body.must_change))


@router.post("/{name}/role", response_model=AccountOut, responses={**USER_ERRORS, **bad_request(), **LAST_ADMIN},
             summary="修改角色, in force from the account's next request")
def change_role(name: UserName, body: RoleIn, caller: Admin, review: Review) -> AccountOut:
    return AccountOut.of(review.store.accounts.set_role(name, body.role, actor=caller.user.name))


@router.post("/{name}/profile", response_model=AccountOut, responses={
    **USER_ERRORS, **bad_request("the display name holds control characters"),
    **refusal(409, "Another account has the badge number")}, summary="姓名与执法证号, as decisions record them")
def set_profile(name: UserName, body: ProfileIn, caller: Admin, review: Review) -> AccountOut:
    return AccountOut.of(review.store.accounts.set_profile(name, body.display_name, body.badge_number,
                                                           actor=caller.user.name))


@router.post("/{name}/revoke-sessions", response_model=SessionsRevokedOut, responses=USER_ERRORS,
             summary="强制下线: every session of the account ends now")
def revoke_sessions(name: UserName, caller: Admin, review: Review) -> SessionsRevokedOut:
    return SessionsRevokedOut(name=name, sessions_ended=review.store.accounts.revoke_sessions(
        name, actor=caller.user.name))
