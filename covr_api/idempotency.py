"""Every POST runs through here: one transaction for the work, replayed for a repeated Idempotency-Key."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from covr_core.contact.accounts import Principal
from covr_core.platform import idempotency


def respond_once(
    db: psycopg.Connection,
    *,
    user: Principal,
    key: str | None,
    route: str,
    body: BaseModel | dict | None,
    work: Callable[[], BaseModel | dict | list | None],
    status_code: int = 201,
) -> JSONResponse:
    request_json = jsonable_encoder(body.model_dump(mode="json") if isinstance(body, BaseModel) else body)

    def unit() -> tuple[int, dict | list]:
        result = work()
        payload = result.model_dump(mode="json") if isinstance(result, BaseModel) else jsonable_encoder(result)
        return status_code, payload

    outcome = idempotency.run_once(
        db, user_id=user.user_id, key=key, fingerprint=idempotency.request_fingerprint(route, request_json), work=unit
    )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    if outcome.status_code == 204:
        return JSONResponse(None, status_code=204, headers=headers)
    return JSONResponse(outcome.body, status_code=outcome.status_code, headers=headers)
