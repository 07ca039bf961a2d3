"""The signed checkpoint of every chain's head, and the check that verifies every chain against it."""

from __future__ import annotations

import time

import dagster as dg

from covr_core.ledger import checkpoint, verify
from covr_pipelines.defs.ledger.resources import LedgerKeysResource
from covr_pipelines.resources import ObjectStoreResource, PostgresResource

GROUP = "ledger"


def _verify(postgres: PostgresResource, object_store: ObjectStoreResource, keys: LedgerKeysResource):
    settings = keys.settings()
    exported = checkpoint.exported_documents(object_store.store())
    with postgres.connection() as conn:
        return verify.verify(conn, trusted_keys=checkpoint.trusted_keys(settings), exported=exported)


def _problem_metadata(report: verify.Report) -> dict:
    first = report.first
    return {
        "entries": report.entries,
        "copies": report.copies,
        "problems": len(report.problems),
        "checkpoint_id": report.checkpoint_id or 0,
        **({"first_copy_id": first.copy_id or "", "first_seq": first.seq or 0, "first_reason": first.reason,
            "first_problem": str(first)} if first else {}),
    }


@dg.asset(group_name=GROUP, owners=[f"team:{GROUP}"], kinds={"python", "postgres"})
def ledger_checkpoint(
    postgres: PostgresResource,
    object_store: ObjectStoreResource,
    ledger_keys: LedgerKeysResource,
) -> dg.MaterializeResult:
    """A signed Merkle checkpoint (RFC 9162) over every copy's chain head, exported to the object store as JSON.

    It verifies the ledger first and refuses to sign a ledger that does not verify: signing over a rewritten
    chain would make the rewrite the new truth.
    """
    started = time.perf_counter()
    key = checkpoint.signing_key(ledger_keys.settings())
    report = _verify(postgres, object_store, ledger_keys)
    if not report.ok:
        raise dg.Failure(description=f"not signing a ledger that fails verification: {report.first}",
                         metadata=_problem_metadata(report))
    with postgres.connection() as conn:
        cp = checkpoint.create(conn, key)
    key_name = checkpoint.export(object_store.store(), cp)
    return dg.MaterializeResult(metadata={
        "checkpoint_id": cp.checkpoint_id,
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash.hex(),
        "key_id": cp.key_id,
        "object_key": key_name,
        "entries_verified": report.entries,
        "seconds": round(time.perf_counter() - started, 3),
    })


@dg.asset_check(asset=ledger_checkpoint, blocking=False,
                description="Every chain, its head and the latest signed checkpoint verify; a failure names the "
                            "copy and the entry.")
def ledger_chains_verify(
    postgres: PostgresResource, object_store: ObjectStoreResource, ledger_keys: LedgerKeysResource
) -> dg.AssetCheckResult:
    report = _verify(postgres, object_store, ledger_keys)
    return dg.AssetCheckResult(
        passed=report.ok,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(f"{report.entries} entries in {report.copies} copies verify" if report.ok
                     else f"{report.first} ({len(report.problems)} problem(s))"),
        metadata=_problem_metadata(report) | {"seconds": round(report.seconds, 3)},
    )
