"""Review accounts, for admins."""

from __future__ import annotations

from fastapi import APIRouter, status

from pipeline.review.auth import hash_password
from pipeline.review.routers.dependencies import BAD_BODY, FORBIDDEN, Admin, Review
from pipeline.review.schemas import NewUserIn, UserOut

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=list[UserOut], responses=FORBIDDEN)
def users(caller: Admin, review: Review) -> list[UserOut]:
    return [UserOut.of(user) for user in review.store.accounts.users()]


@router.post("", response_model=UserOut, status_code=status.HTTP_201_CREATED,
             responses={**FORBIDDEN, **BAD_BODY, 409: {"description": "The name is taken"}})
def add_user(body: NewUserIn, caller: Admin, review: Review) -> UserOut:
    return UserOut.of(review.store.accounts.add_user(body.name, body.role, hash_password(body.password),
                                                     actor=caller.user.name))
