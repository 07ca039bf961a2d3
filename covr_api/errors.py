"""RFC 9457 problem+json: one stable `type` per error, one handler for every domain error."""

from __future__ import annotations

import logging

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from covr_core.shared import errors

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://covr.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"

STATUS = {
    errors.NotFound: 404,
    errors.InvalidTransition: 409,
    errors.Conflict: 409,
    errors.InvalidInput: 422,
    errors.IdempotencyKeyReused: 422,
    errors.Unauthorized: 401,
    errors.RateLimited: 429,
    errors.PayloadTooLarge: 413,
}
TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict with the current state",
    413: "Payload too large",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class Problem(BaseModel):
    """An RFC 9457 problem detail; `type` is stable per error and safe to switch on."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict] | None = None
    retry_after: int | None = None


def problem(status: int, code: str, detail: str, headers: dict | None = None, **extra) -> JSONResponse:
    body = {"type": PROBLEM_BASE + code, "title": TITLES.get(status, code), "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def problems(*statuses: int) -> dict:
    """The `responses=` of a route: its error statuses, documented with the Problem schema."""
    return {
        s: {"model": Problem, "description": TITLES.get(s, str(s))}
        for s in statuses
    }


def openapi_with_problems(app: FastAPI) -> dict:
    """The OpenAPI document, with every error response described as problem+json (FastAPI's default 422
    schema is not what this API sends)."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = Problem.model_json_schema()
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            for status, response in op.get("responses", {}).items():
                if status[0] in "45":
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem_ref}}
                    response["description"] = TITLES.get(int(status), response.get("description", ""))
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(name, None)
    app.openapi_schema = schema
    return schema


def status_of(exc: errors.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def _jsonable_errors(exc: RequestValidationError) -> list[dict]:
    # `ctx` may hold the exception object itself; keep what a client can read.
    return [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]


def install(app: FastAPI) -> None:
    @app.exception_handler(errors.DomainError)
    async def _domain(request: Request, exc: errors.DomainError):
        status = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if isinstance(exc, errors.RateLimited):
            headers = {"Retry-After": str(exc.retry_after)}
        return problem(status, exc.code, exc.detail, headers=headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return problem(422, "invalid_request", "the request does not match the schema", errors=_jsonable_errors(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "error")
        return problem(exc.status_code, code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(psycopg.OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _database_down(request: Request, exc: Exception):
        log.error("database unavailable on %s %s: %s", request.method, request.url.path, " ".join(str(exc).split()))
        return problem(503, "service_unavailable", "the database is not reachable right now; retry shortly",
                       headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "an internal error occurred; it has been logged")
