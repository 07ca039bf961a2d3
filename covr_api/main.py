"""The Covr HTTP API: routers mounted under /v1, domain errors mapped to problem+json."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from covr_core.platform.db import Database
from covr_core.platform.settings import Settings


def problem(status: int, code: str, detail: str, **extra) -> JSONResponse:
    body = {"type": f"https://covr.example/problems/{code}", "title": code, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.db = Database.from_settings(settings or Settings())
        try:
            yield
        finally:
            app.state.db.close()

    app = FastAPI(title="Covr", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return problem(422, "invalid_request", "the request does not match the schema", errors=exc.errors())

    @app.get("/v1/health", tags=["health"])
    def health(request: Request) -> dict:
        with request.app.state.db.connection() as conn:
            conn.execute("select 1")
        return {"status": "ok"}

    return app


app = create_app()
