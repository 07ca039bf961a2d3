"""Liveness with one round trip to the system of record."""

from __future__ import annotations

from fastapi import APIRouter

from covr_api.deps import DbDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(db: DbDep) -> dict:
    db.execute("select 1")
    return {"status": "ok"}
