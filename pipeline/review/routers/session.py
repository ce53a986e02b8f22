"""Logging in and out with a bearer token, and who the token belongs to."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response, status

from pipeline.review.auth import LoginRefused, client_address, log_in
from pipeline.review.routers.dependencies import BAD_BODY, UNAUTHORISED, AnyUser, Review
from pipeline.review.schemas import LoginIn, TokenOut, UserOut

router = APIRouter(tags=["session"])


LOGIN_ERRORS = {
    **BAD_BODY,
    401: {"description": "Wrong name or password"},
    429: {"description": "Too many failed logins of this account or from this address: locked, see Retry-After"},
    503: {"description": "Too many logins at once: try again after Retry-After"},
}


@router.post("/login", response_model=TokenOut, responses=LOGIN_ERRORS,
             summary="Exchange a name and password for a bearer token")
def login(request: Request, body: LoginIn, review: Review) -> TokenOut:
    try:
        user = log_in(review, body.name, body.password, client_address(request))
    except LoginRefused as refused:
        raise HTTPException(refused.status_code, refused.message, headers=refused.headers) from None
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong name or password")
    token, session = review.store.accounts.create_session(user, review.settings.session_ttl_s)
    return TokenOut(access_token=token, expires_at=session.expires_at, user=UserOut.of(user))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=UNAUTHORISED,
             summary="End this token's session")
def logout(caller: AnyUser, review: Review) -> Response:
    review.store.accounts.end_session(caller.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=UserOut, responses=UNAUTHORISED)
def me(caller: AnyUser) -> UserOut:
    return UserOut.of(caller.user)
