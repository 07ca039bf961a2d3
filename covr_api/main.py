"""The Covr HTTP API: one router per noun under /v1, domain errors mapped to problem+json."""

from __future__ import annotations

from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI

from covr_api import errors
from covr_api.routes import auth, contacts, copies, health, history, notifications, uploads, users
from covr_api.routes import handovers, requests, suspected_exchanges
from covr_api.routes import search
from covr_core.contact.accounts import LoginPolicy, TokenPolicy, signing_secret
from covr_core.platform import migrations
from covr_core.platform.db import Database
from covr_core.platform.settings import Settings

# Open routes: no token. Every other router answers 401 without one.
OPEN_ROUTERS = [
    health.router,
    auth.router,
]
ROUTERS = [
    users.router,
    contacts.router,
    copies.router,
    uploads.router,
    notifications.router,
    requests.router,
    handovers.router,
    handovers.returns_router,
    suspected_exchanges.router,
    history.router,
    search.router,
    search.similar_router,
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        db = Database.from_settings(settings)
        try:
            with db.connection() as conn:
                migrations.migrate(conn)
            app.state.db = db
            yield
        finally:
            db.close()

    app = FastAPI(
        title="Covr",
        version="0.1.0",
        summary="Book sharing among people who know each other: copies, requests, hand-overs, notifications.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.token_secret = signing_secret(settings.token_secret, settings.home / "token-secret")
    app.state.token_policy = TokenPolicy(
        secret=app.state.token_secret,
        access_ttl=timedelta(seconds=settings.access_token_ttl_s),
        refresh_ttl=timedelta(seconds=settings.refresh_token_ttl_s),
    )
    app.state.login_policy = LoginPolicy(
        max_failures_per_handle=settings.login_max_failures_per_handle,
        max_failures_per_address=settings.login_max_failures_per_address,
        window=timedelta(seconds=settings.login_window_s),
    )
    errors.install(app)
    for router in OPEN_ROUTERS:
        app.include_router(router, prefix="/v1")
    for router in ROUTERS:
        app.include_router(router, prefix="/v1", responses=errors.problems(401))
    app.openapi = lambda: errors.openapi_with_problems(app)
    return app
