"""Uploads: the photo itself (local store, streamed, size-limited) or a presigned PUT URL (S3); and its status."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from covr_api.deps import CurrentUser, DbDep, IdempotencyKey, SettingsDep
from covr_api.errors import problems
from covr_api.idempotency import respond_once
from covr_api.routes.copies import stores
from covr_api.schemas.uploads import UploadCreate, UploadPublic, UploadStatusPublic
from covr_core.media import uploads
from covr_core.shared.errors import InvalidInput

router = APIRouter(prefix="/uploads", tags=["uploads"])

_BODY = {
    "requestBody": {
        "required": True,
        "description": "Local store: the photo itself (JPEG, PNG, WebP or HEIC), streamed. S3: JSON naming its type.",
        "content": {
            "application/json": {"schema": UploadCreate.model_json_schema()},
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def _is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


@router.post("", status_code=201, response_model=UploadPublic, openapi_extra=_BODY,
             responses=problems(401, 413, 422))
async def create_upload(request: Request, db: DbDep, user: CurrentUser, settings: SettingsDep,
                        idempotency_key: IdempotencyKey = None):
    """Upload a photo for ingest; it is picked up by the ingest sensor under uploads/{your id}/.

    With the local store, send the photo as the body (any image type or application/octet-stream); over
    `max_upload_bytes` it is refused with 413 and nothing is kept. With S3, send `{"content_type": ...}` and PUT
    the photo to the returned `upload_url` with `upload_headers`. Either way the answer is 201 with status pending.
    """
    _, signer = stores(request)
    if signer is not None:
        if not _is_json(request):
            raise InvalidInput('this server stores photos in S3: POST {"content_type": "image/jpeg"} as JSON, then '
                               "PUT the photo to the upload_url it returns")
        try:
            body = UploadCreate.model_validate_json(await request.body())
        except ValidationError as exc:
            raise InvalidInput(f"the upload request does not match the schema: {exc.errors()[0]['msg']}") from None
        return await run_in_threadpool(
            respond_once, db, user=user, key=idempotency_key, route="POST /v1/uploads", body=body,
            work=lambda: UploadPublic(**uploads.presign_upload(db, signer, uploader_id=user.user_id,
                                                               content_type=body.content_type)))
    if _is_json(request):
        raise InvalidInput("this server stores photos itself: send the photo as the request body (image/jpeg, "
                           "image/png, image/webp, image/heic or application/octet-stream)")
    store, _ = stores(request)
    declared = request.headers.get("content-length")
    incoming = uploads.IncomingFile(
        store, uploader_id=user.user_id, max_bytes=settings.max_upload_bytes,
        declared_size=int(declared) if declared and declared.isdigit() else None,
    )
    with incoming:
        async for chunk in request.stream():
            incoming.write(chunk)
        incoming.finish()
        return await run_in_threadpool(
            respond_once, db, user=user, key=idempotency_key, route="POST /v1/uploads", body=incoming.fingerprint,
            work=lambda: UploadPublic(**uploads.receive_file(db, incoming)))


@router.get("/{upload_id}", response_model=UploadStatusPublic, responses=problems(401, 404))
def upload_status(upload_id: str, db: DbDep, user: CurrentUser):
    """What ingest made of one of my uploads: status, decision, reason and the identified book."""
    return uploads.upload_status(db, uploader_id=user.user_id, upload_id=upload_id)
