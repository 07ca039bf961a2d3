"""Contacts: invite by handle, accept, decline, remove, block; my links, and members to invite."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from covr_api.deps import CurrentUser, DbDep, IdempotencyKey
from covr_api.errors import problems
from covr_api.idempotency import respond_once
from covr_api.schemas.contacts import (
    ContactInvite,
    ContactPublic,
    ContactsPublic,
    MemberMatch,
    MemberMatchesPublic,
)
from covr_core.contact import links

router = APIRouter(prefix="/contacts", tags=["contacts"])


@router.get("", response_model=ContactsPublic, responses=problems(401, 422))
def list_contacts(
    db: DbDep,
    user: CurrentUser,
    status: Literal["pending", "accepted", "blocked"] | None = None,
    direction: Literal["incoming", "outgoing"] | None = None,
    limit: Annotated[int, Query(ge=1, le=links.MAX_PAGE)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    """My contacts, invitations both ways and my blocks, by handle, a page at a time."""
    data, count = links.list_contacts(db, user_id=user.user_id, status=status, direction=direction, limit=limit,
                                      offset=offset)
    return ContactsPublic(data=data, count=count)


@router.get("/search", response_model=MemberMatchesPublic, responses=problems(401, 422))
def search_members(
    db: DbDep,
    user: CurrentUser,
    q: Annotated[str, Query(min_length=1, max_length=links.MAX_SEARCH_CHARS, description="Start of a handle or name")],
    limit: Annotated[int, Query(ge=1, le=links.MAX_PAGE)] = 20,
):
    """Members to invite: handle, display name or a word of it starting with `q`; never one who blocks you."""
    found = links.search_members(db, user_id=user.user_id, query=q, limit=limit)
    return MemberMatchesPublic(data=[MemberMatch(**m) for m in found], count=len(found))


@router.post("", status_code=201, response_model=ContactPublic, responses=problems(401, 404, 409, 422))
def invite(body: ContactInvite, db: DbDep, user: CurrentUser, idempotency_key: IdempotencyKey = None):
    """Invite a member by handle. Inviting someone who invited you accepts their invitation.

    404 for an unknown handle (and, indistinguishably, for a member who blocks you); 409 when already invited or
    already contacts, or when you block them.
    """
    return respond_once(db, user=user, key=idempotency_key, route="POST /v1/contacts", body=body,
                        work=lambda: ContactPublic(**links.invite(db, user_id=user.user_id, handle=body.handle)))


@router.get("/{user_id}", response_model=ContactPublic, responses=problems(401, 404))
def get_contact(user_id: str, db: DbDep, user: CurrentUser):
    """My link with one member."""
    return links.get_contact(db, user_id=user.user_id, other_id=user_id)


@router.post("/{user_id}/accept", response_model=ContactPublic, responses=problems(401, 404, 409, 422))
def accept(user_id: str, db: DbDep, user: CurrentUser, idempotency_key: IdempotencyKey = None):
    """Accept the invitation this member sent you. 404 if there is none; 409 if it is yours or already accepted."""
    return respond_once(db, user=user, key=idempotency_key, route="POST /v1/contacts/{user_id}/accept",
                        body={"user_id": user_id}, status_code=200,
                        work=lambda: ContactPublic(**links.accept(db, user_id=user.user_id, other_id=user_id)))


@router.post("/{user_id}/decline", status_code=204, responses=problems(401, 404, 409, 422))
def decline(user_id: str, db: DbDep, user: CurrentUser, idempotency_key: IdempotencyKey = None) -> Response:
    """Decline the invitation this member sent you; they may invite again (block them to prevent it)."""
    return respond_once(db, user=user, key=idempotency_key, route="POST /v1/contacts/{user_id}/decline",
                        body={"user_id": user_id}, status_code=204,
                        work=lambda: links.decline(db, user_id=user.user_id, other_id=user_id))


@router.post("/{user_id}/block", response_model=ContactPublic, responses=problems(401, 404, 409, 422))
def block(user_id: str, db: DbDep, user: CurrentUser, idempotency_key: IdempotencyKey = None):
    """Block a member: any invitation or contact ends; they cannot find or invite you, nor see your copies."""
    return respond_once(db, user=user, key=idempotency_key, route="POST /v1/contacts/{user_id}/block",
                        body={"user_id": user_id}, status_code=200,
                        work=lambda: ContactPublic(**links.block(db, user_id=user.user_id, other_id=user_id)))


@router.delete("/{user_id}", status_code=204, responses=problems(401, 404))
def remove(user_id: str, db: DbDep, user: CurrentUser) -> Response:
    """End what you have with this member: withdraw or refuse an invitation, end a contact, or lift your block."""
    links.remove(db, user_id=user.user_id, other_id=user_id)
    return Response(status_code=204)
