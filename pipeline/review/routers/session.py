"""Logging in and out with a bearer token, and who the token belongs to."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from pipeline.review.auth import check_password
from pipeline.review.routers.dependencies import BAD_BODY, UNAUTHORISED, AnyUser, Review
from pipeline.review.schemas import LoginIn, TokenOut, UserOut

router = APIRouter(tags=["session"])


@router.post("/login", response_model=TokenOut, responses={**BAD_BODY, 401: {"description": "Wrong name or password"}},
             summary="Exchange a name and password for a bearer token")
def login(body: LoginIn, review: Review) -> TokenOut:
    user = check_password(review, body.name, body.password)
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
