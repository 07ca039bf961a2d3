"""A copy's provenance ledger: its history, the verification of its chain, and an inclusion proof."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from covr_api.deps import CurrentUser, DbDep, SettingsDep
from covr_api.errors import problems
from covr_api.schemas.history import HistoryPublic, HistoryVerificationPublic, InclusionProofPublic
from covr_core.ledger import checkpoint, history, proofs, verify

router = APIRouter(prefix="/copies", tags=["history"])


def _user(entry: dict, side: str) -> dict | None:
    user_id = entry[f"{side}_user_id"]
    return None if user_id is None else {"user_id": str(user_id), "handle": entry[f"{side}_handle"]}


@router.get("/{copy_id}/history", response_model=HistoryPublic, responses=problems(404, 422))
def copy_history(
    copy_id: str,
    db: DbDep,
    user: CurrentUser,
    after: Annotated[int, Query(ge=0, description="the last seq of the previous page")] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
):
    history.require_visible_copy(db, user.user_id, copy_id)
    rows, count = history.entries(db, copy_id, after_seq=after, limit=limit)
    data = [
        {
            "seq": r["seq"], "entry_type": r["entry_type"], "at": r["ts"],
            "from_user": _user(r, "from"), "to_user": _user(r, "to"),
            "evidence": r["refs"].get("evidence"), "refs": r["refs"], "payload": r["payload"],
            "entry_hash": r["entry_hash"], "prev_hash": r["prev_hash"],
        }
        for r in rows
    ]
    last = data[-1]["seq"] if data else after
    return {"data": data, "count": count, "next_after": last if last < count else None}


@router.get("/{copy_id}/history/verify", response_model=HistoryVerificationPublic, responses=problems(404))
def verify_copy_history(copy_id: str, db: DbDep, user: CurrentUser, settings: SettingsDep):
    history.require_visible_copy(db, user.user_id, copy_id)
    report = verify.verify(db, copy_id=copy_id, trusted_keys=checkpoint.trusted_keys(settings))
    return {
        "copy_id": copy_id, "ok": report.ok, "entries": report.entries, "checkpoint_id": report.checkpoint_id,
        "problems": [{"reason": p.reason, "detail": p.detail, "seq": p.seq, "message": str(p)}
                     for p in report.problems],
    }


@router.get("/{copy_id}/history/proof", response_model=InclusionProofPublic, responses=problems(404))
def copy_history_proof(copy_id: str, db: DbDep, user: CurrentUser):
    history.require_visible_copy(db, user.user_id, copy_id)
    return proofs.inclusion_proof(db, copy_id)
