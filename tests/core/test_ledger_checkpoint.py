"""RFC 9162 trees and proofs, checkpoints written as deltas, and proofs a third party can check."""

from __future__ import annotations

import hashlib
import json

import pytest

from covr_core.ledger import chain, checkpoint, merkle, proofs, verify
from tests.core.ledger_support import make_copy


def _reference_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 9162 2.1.1: split at the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _reference_root(leaves[:k]) + _reference_root(leaves[k:])).digest()


@pytest.mark.parametrize("n", list(range(0, 18)) + [31, 32, 33, 100])
def test_root_and_every_inclusion_proof_match_rfc_9162(n):
    data = [f"leaf {i}".encode() for i in range(n)]
    hashes = [merkle.leaf_hash(d) for d in data]
    assert merkle.root(hashes) == _reference_root(data)
    tree = merkle.levels(hashes) if n else None
    for i in range(n):
        path = merkle.inclusion_path(tree, i)
        assert merkle.verify_inclusion(hashes[i], i, n, path, merkle.root(hashes))
        assert not merkle.verify_inclusion(hashes[i], (i + 1) % n, n, path, merkle.root(hashes)) or n == 1
        if path:
            assert not merkle.verify_inclusion(hashes[i], i, n, path[:-1], merkle.root(hashes))


def test_checkpoints_store_only_the_heads_that_moved(aconn, people, key):
    copies = sorted(make_copy(aconn, people["alice"]) for _ in range(3))
    for c in copies:
        chain.append(aconn, copy_id=c, entry_type="copy_created")
    one = checkpoint.create(aconn, key)
    chain.append(aconn, copy_id=copies[1], entry_type="request_created")
    two = checkpoint.create(aconn, key)
    three = checkpoint.create(aconn, key)
    counts = {
        r["checkpoint_id"]: r["n"] for r in aconn.execute(
            "select checkpoint_id, count(*) as n from ledger.checkpoint_head group by 1").fetchall()}
    assert counts == {1: 3, 2: 1}
    assert (one.tree_size, two.tree_size, three.tree_size) == (3, 3, 3)
    assert two.prev_checkpoint_hash == one.body_hash and three.root_hash == two.root_hash != one.root_hash
    assert [str(c) for c, _, _ in checkpoint.leaves(aconn, 3)] == copies
    assert checkpoint.signature_problem(three, {checkpoint.key_id(key): key.public_key()}) is None
    assert verify.verify(aconn, trusted_keys={checkpoint.key_id(key): key.public_key()}).ok


def test_an_inclusion_proof_checks_with_only_the_checkpoint_and_the_public_key(aconn, people, copy_id, key):
    for _ in range(4):
        make_copy(aconn, people["bob"])
    chain.append(aconn, copy_id=copy_id, entry_type="copy_created")
    chain.append(aconn, copy_id=copy_id, entry_type="request_created", from_user_id=people["bob"])
    checkpoint.create(aconn, key)
    chain.append(aconn, copy_id=copy_id, entry_type="request_declined")  # after the checkpoint: not in the proof
    proof = json.loads(json.dumps(proofs.inclusion_proof(aconn, copy_id)))
    assert proof["head_seq"] == 2 and len(proof["entries"]) == 2
    assert proofs.check_proof(proof, [checkpoint.parse_public_key(checkpoint.public_hex(key))]) == []
    proof["head_seq"] = 3
    assert proofs.check_proof(proof, [key.public_key()])[0].startswith("checkpoint mismatch")


def test_a_copy_without_checkpoint_has_no_proof(aconn, copy_id, key):
    from covr_core.shared.errors import NotFound

    with pytest.raises(NotFound, match="no checkpoint"):
        proofs.inclusion_proof(aconn, copy_id)
    checkpoint.create(aconn, key)
    with pytest.raises(NotFound, match="no entry in checkpoint 1"):
        proofs.inclusion_proof(aconn, copy_id)


def test_keys_round_trip_and_name_themselves(tmp_path):
    from covr_core.platform.settings import Settings

    pem = checkpoint.generate_private_key_pem()
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "signing-key.pem").write_bytes(pem)
    old = checkpoint.load_private_key(checkpoint.generate_private_key_pem())
    settings = Settings(home=tmp_path, ledger_trusted_keys=[checkpoint.public_hex(old)])
    key = checkpoint.signing_key(settings)
    assert set(checkpoint.trusted_keys(settings)) == {checkpoint.key_id(key), checkpoint.key_id(old)}
    with pytest.raises(checkpoint.SigningKeyMissing, match="covr ledger keygen"):
        checkpoint.signing_key(Settings(home=tmp_path / "elsewhere"))
