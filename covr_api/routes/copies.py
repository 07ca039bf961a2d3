"""Copies: mine and my contacts', one with its book and images, the owner's changes, withdraw and lost.

Every copy a member may not see answers 404 exactly like a missing one, and so does a change to a visible copy
that is not theirs to make (see covr_core.catalog.copies for who may do what); a wrong state is 409.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from covr_api.deps import CurrentUser, DbDep, IdempotencyKey
from covr_api.errors import problems
from covr_api.idempotency import respond_once
from covr_api.schemas.copies import CopiesPublic, CopyPublic, CopyStatus, CopyUpdate
from covr_core.catalog import copies
from covr_core.exchange import circulation
from covr_core.media import uploads
from covr_core.media.storage import ObjectNotFound
from covr_core.shared.errors import NotFound

router = APIRouter(prefix="/copies", tags=["copies"])


def stores(request: Request):
    """The app's object store and, for S3, the signer of browser-facing URLs (None locally); made on first use."""
    state = request.app.state
    if getattr(state, "object_store", None) is None:
        state.object_store = uploads.object_store(state.settings)
        state.url_signer = uploads.signing_store(state.settings)
    return state.object_store, state.url_signer


def _thumbnail_urls(request: Request) -> copies.ThumbnailUrl:
    """S3: a presigned GET on the public endpoint. Local store: this API's thumbnail route."""
    _, signer = stores(request)
    if signer is not None:
        return lambda image: uploads.presigned_get_url(signer, image["thumbnail_key"])
    return lambda image: str(request.url_for("copy_thumbnail", copy_id=str(image["copy_id"]),
                                             image_id=str(image["image_id"])))


@router.get("", response_model=CopiesPublic, responses=problems(401, 422))
def list_copies(
    db: DbDep,
    user: CurrentUser,
    status: CopyStatus | None = None,
    holder: Annotated[str | None, Query(description="A member id, or `me`")] = None,
    owner: Annotated[str | None, Query(description="A member id, or `me`")] = None,
    limit: Annotated[int, Query(ge=1, le=copies.MAX_PAGE)] = 20,
    offset: Annotated[int, Query(ge=0)] = 0,
):
    """The copies I own or hold and those my contacts hold, newest first, a page at a time."""
    me = lambda value: user.user_id if value == "me" else value  # noqa: E731
    data, count = copies.list_copies(db, viewer_id=user.user_id, status=status, holder_id=me(holder),
                                     owner_id=me(owner), limit=limit, offset=offset)
    return CopiesPublic(data=data, count=count)


@router.get("/{copy_id}", response_model=CopyPublic, responses=problems(401, 404))
def view_copy(copy_id: str, db: DbDep, user: CurrentUser, request: Request):
    """One copy with its book, owner, current holder, condition and images."""
    return copies.view_copy(db, viewer_id=user.user_id, copy_id=copy_id, thumbnail_url=_thumbnail_urls(request))


@router.patch("/{copy_id}", response_model=CopyPublic, responses=problems(401, 404, 409, 422))
def update_copy(copy_id: str, body: CopyUpdate, db: DbDep, user: CurrentUser, request: Request):
    """Set notes, tags or availability; the owner only."""
    fields = body.model_fields_set
    changes = {}
    if "notes" in fields:
        changes["notes"] = body.notes
    if "tags" in fields:
        changes["tags"] = body.tags or []
    if "availability" in fields:
        changes["availability"] = body.availability
    return copies.update_copy(db, user_id=user.user_id, copy_id=copy_id, thumbnail_url=_thumbnail_urls(request),
                              **changes)


@router.post("/{copy_id}/withdraw", response_model=CopyPublic, responses=problems(401, 404, 409, 422))
def withdraw(copy_id: str, db: DbDep, user: CurrentUser, request: Request, idempotency_key: IdempotencyKey = None):
    """Take the copy out of circulation for good: the owner, with the copy back in hand and no open request.

    The copy's history (its ledger) records it in the same transaction."""
    urls = _thumbnail_urls(request)
    return respond_once(db, user=user, key=idempotency_key, route="POST /v1/copies/{copy_id}/withdraw",
                        body={"copy_id": copy_id}, status_code=200,
                        work=lambda: CopyPublic(**circulation.withdraw(db, user_id=user.user_id, copy_id=copy_id,
                                                                      thumbnail_url=urls)))


@router.post("/{copy_id}/lost", response_model=CopyPublic, responses=problems(401, 404, 409, 422))
def mark_lost(copy_id: str, db: DbDep, user: CurrentUser, request: Request, idempotency_key: IdempotencyKey = None):
    """Record the copy as lost: its owner or its current holder; its history records it in the same transaction."""
    urls = _thumbnail_urls(request)
    return respond_once(db, user=user, key=idempotency_key, route="POST /v1/copies/{copy_id}/lost",
                        body={"copy_id": copy_id}, status_code=200,
                        work=lambda: CopyPublic(**circulation.mark_lost(db, user_id=user.user_id, copy_id=copy_id,
                                                                       thumbnail_url=urls)))


@router.get(
    "/{copy_id}/images/{image_id}/thumbnail",
    name="copy_thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "The thumbnail (JPEG)"}, **problems(401, 404)},
)
def thumbnail(copy_id: str, image_id: str, db: DbDep, user: CurrentUser, request: Request) -> Response:
    """The thumbnail of one of a visible copy's images."""
    key = copies.thumbnail_key(db, viewer_id=user.user_id, copy_id=copy_id, image_id=image_id)
    store, _ = stores(request)
    try:
        data = store.get(key)
    except ObjectNotFound:
        raise NotFound(f"image {image_id} of copy {copy_id} not found") from None
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})
