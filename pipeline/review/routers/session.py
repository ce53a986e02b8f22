"""Logging in and out with a bearer token, who the token belongs to, and changing one's own password."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from pipeline.review.auth import LoginRefused, change_password, client_address, log_in
from pipeline.review.routers.dependencies import UNAUTHORISED, LoggedIn, Review, bad_request, refusal
from pipeline.review.schemas import LoginIn, PasswordChangeIn, TokenOut, UserOut

router = APIRouter(tags=["session"])


LOCKOUTS = {
    **refusal(429, "Too many failed logins of this account or from this address: locked, see Retry-After"),
    **refusal(503, "Too many logins at once: try again after Retry-After"),
}
LOGIN_ERRORS = {
    **bad_request(),
    **refusal(401, "Wrong name or password"),
    **refusal(403, "The account is disabled"),
    **LOCKOUTS,
}


@router.post("/login", response_model=TokenOut, responses=LOGIN_ERRORS,
             summary="Exchange a name and password for a bearer token")
def login(request: Request, body: LoginIn, review: Review) -> TokenOut:
    try:
        user = log_in(review, body.name, body.password, client_address(request))
    except LoginRefused as refused:
        raise HTTPException(refused.status_code, refused.message, headers=refused.headers) from None
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "用户名或密码错误")
    token, session = review.store.accounts.create_session(user, review.settings.session_ttl_s)
    return TokenOut(access_token=token, expires_at=session.expires_at,
                    must_change_password=user.must_change_password, user=UserOut.of(user))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=UNAUTHORISED,
             summary="End this token's session")
def logout(caller: LoggedIn, review: Review) -> Response:
    review.store.accounts.end_session(caller.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=UserOut, responses=UNAUTHORISED)
def me(caller: LoggedIn) -> UserOut:
    return UserOut.of(caller.user)


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT, responses={
    **UNAUTHORISED, **bad_request("the current password is wrong or the new one the same"), **LOCKOUTS},
    summary="Choose a new password (required after an admin reset it); the user's other sessions end")
def change_own_password(request: Request, body: PasswordChangeIn, caller: LoggedIn, review: Review) -> Response:
    try:
        change_password(review, caller, body.current_password, body.new_password, client_address(request))
    except LoginRefused as refused:
        raise HTTPException(refused.status_code, refused.message, headers=refused.headers) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
