"""The signed-in member's own account."""

from __future__ import annotations

from fastapi import APIRouter

from covr_api.deps import CurrentUser, DbDep
from covr_api.errors import problems
from covr_api.schemas.accounts import UserPrivate
from covr_core.contact import accounts

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me", response_model=UserPrivate, responses=problems(401))
def me(db: DbDep, user: CurrentUser):
    return accounts.get_user(db, user.user_id)
