"""Multi-index pHash lookup finds exactly what a full bit_count scan finds, at every radius up to 10."""

from __future__ import annotations

import random
from math import comb

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from covr_core.media.neardup import (
    CHUNKS,
    MASK64,
    MAX_RADIUS,
    as_int64,
    chunks_of,
    explain,
    find_near_duplicates,
    find_near_duplicates_bruteforce,
    hamming,
    neighbours,
)

UNIFORM = 20_000
MAX_PLANTED = 10
# 0 and -1 sit on the chunk edges (all zeros, all ones, sign bit set); the others are random.
QUERIES = (0, -1, as_int64(0xF0F0_0F0F_3C3C_C3C3), as_int64(0xD1B5_4A32_D192_ED03), 0x1234_5678_9ABC_DEF0)

int64s = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)


def _flip(phash: int, mask: int) -> int:
    return as_int64((phash ^ mask) & MASK64)


# ---- pure functions -------------------------------------------------------------------------


@given(int64s)
def test_chunks_reassemble_the_hash(phash):
    c0, c1, c2 = chunks_of(phash)
    assert (c0 << 43) | (c1 << 22) | c2 == phash & MASK64
    assert all(0 <= c < 1 << bits for c, (_, bits) in zip((c0, c1, c2), CHUNKS, strict=True))
    assert chunks_of(phash & MASK64) == (c0, c1, c2)  # the unsigned spelling of the same bits


@given(st.integers(min_value=1, max_value=22), st.integers(min_value=0, max_value=3), st.data())
def test_neighbours_are_exactly_the_ball(bits, radius, data):
    value = data.draw(st.integers(min_value=0, max_value=(1 << bits) - 1))
    found = neighbours(value, bits, radius)
    assert found[0] == value
    assert len(found) == len(set(found)) == sum(comb(bits, k) for k in range(min(radius, bits) + 1))
    assert all(0 <= v < 1 << bits and (v ^ value).bit_count() <= radius for v in found)


def test_neighbourhood_sizes_of_the_real_chunks():
    assert [len(neighbours(0, 21, r)) for r in range(3)] == [1, 22, 232]
    assert [len(neighbours(0, 22, r)) for r in range(3)] == [1, 23, 254]


@given(int64s, int64s)
def test_hamming_on_signed_hashes(a, b):
    assert hamming(a, b) == hamming(b, a) == bin((a ^ b) & MASK64).count("1")
    assert hamming(a, b) == hamming(a & MASK64, b)


@settings(deadline=None)  # neighbourhoods of up to 1,794 values; no flaky deadline on a busy machine
@given(int64s, st.sets(st.integers(min_value=0, max_value=63), max_size=MAX_RADIUS), st.data())
def test_pigeonhole_one_chunk_is_within_a_third(a, flipped, data):
    b = _flip(a, sum(1 << bit for bit in flipped))
    radius = data.draw(st.integers(min_value=len(flipped), max_value=MAX_RADIUS))
    assert hamming(a, b) == len(flipped)
    assert any(
        cb in neighbours(ca, bits, radius // 3)
        for ca, cb, (_, bits) in zip(chunks_of(a), chunks_of(b), CHUNKS, strict=True)
    )


def test_out_of_range_input_is_refused(conn):
    with pytest.raises(ValueError, match="radius 12 is outside 0..11"):
        find_near_duplicates(conn, 0, 12)
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        find_near_duplicates(conn, 1 << 64, 4)


# ---- against Postgres -----------------------------------------------------------------------


def _planted(query: int, rng: random.Random) -> list[int]:
    """Hashes at every distance 0..10 from `query`, once per split of the flips over the three chunks.

    The splits run from all flips in one chunk to spread evenly (3/3/2 at 8), the case where the
    pigeonhole bound is tight; chunk 0 flips include the sign bit half the time.
    """
    out = []
    for distance in range(MAX_PLANTED + 1):
        for split in ((a, b, distance - a - b) for a in range(distance + 1) for b in range(distance - a + 1)):
            mask = 0
            for (shift, bits), flips in zip(CHUNKS, split, strict=True):
                positions = rng.sample(range(bits), flips)
                if shift == 43 and flips and rng.random() < 0.5 and 20 not in positions:
                    positions[0] = 20  # bit 63
                mask |= sum(1 << (shift + p) for p in positions)
            out.append(_flip(query, mask))
    return out


def _insert(conn, phashes, status="accepted") -> None:
    user_id = conn.execute(
        "insert into contact.user (handle, display_name) values (%s, 'Near-dup test') "
        "on conflict (handle) do update set display_name = excluded.display_name returning user_id",
        ("neardup",),
    ).fetchone()["user_id"]
    start = conn.execute("select count(*) as n from media.image").fetchone()["n"]
    reason = None if status == "accepted" else "blurred"
    with conn.cursor().copy(
        "copy media.image (object_key, uploader_id, status, rejection_reason, sha256, phash, byte_size, format) "
        "from stdin"
    ) as copy:
        for i, phash in enumerate(phashes, start):
            copy.write_row((f"test/{i}", user_id, status, reason, f"{i:064x}", phash, 1000, "jpeg"))


@pytest.fixture
def stored(conn) -> list[int]:
    """20k uniform hashes plus the planted neighbours of every query, all accepted."""
    rng = random.Random(20240611)
    phashes = [as_int64(rng.getrandbits(64)) for _ in range(UNIFORM)]
    for query in QUERIES:
        phashes += _planted(query, rng)
    _insert(conn, phashes)
    conn.commit()
    return phashes


def test_generated_chunk_columns_match_chunks_of(conn, stored):
    rows = conn.execute("select phash, phash_c0, phash_c1, phash_c2 from media.image").fetchall()
    assert len(rows) == len(stored)
    for row in rows:
        assert chunks_of(row["phash"]) == (row["phash_c0"], row["phash_c1"], row["phash_c2"])


def test_lookup_equals_bruteforce_at_every_radius(conn, stored):
    rng = random.Random(7)
    # Planted queries, uniform random ones, and a stored uniform hash with a few bits flipped.
    queries = [*QUERIES, as_int64(rng.getrandbits(64)), _flip(stored[123], 0b1011), _flip(stored[456], 1 << 63)]
    for query in queries:
        for radius in range(MAX_PLANTED + 1):
            found = find_near_duplicates(conn, query, radius)
            assert found == find_near_duplicates_bruteforce(conn, query, radius), (query, radius)
            expected = sorted((hamming(query, p), p) for p in stored if hamming(query, p) <= radius)
            assert sorted((n.distance, n.phash) for n in found) == expected, (query, radius)
            assert [n.distance for n in found] == sorted(n.distance for n in found)
    # The planted set really exercises the bound: 286 hashes within 10 bits of each query.
    assert len(find_near_duplicates(conn, QUERIES[0], 10)) == sum(comb(d + 2, 2) for d in range(11))


def test_unsigned_spelling_finds_the_same(conn, stored):
    assert find_near_duplicates(conn, -1, 8) == find_near_duplicates(conn, MASK64, 8)


def test_rejected_images_are_left_out_unless_asked(conn, stored):
    query = QUERIES[3]
    _insert(conn, [query], status="rejected")
    accepted = find_near_duplicates(conn, query, 0)
    everything = find_near_duplicates(conn, query, 0, accepted_only=False)
    assert len(everything) == len(accepted) + 1
    assert find_near_duplicates_bruteforce(conn, query, 0) == accepted


def test_limit_keeps_the_nearest(conn, stored):
    full = find_near_duplicates(conn, QUERIES[2], 8)
    assert find_near_duplicates(conn, QUERIES[2], 8, limit=5) == full[:5]
    assert [n.distance for n in full[:5]] == [0, 1, 1, 1, 2]


def test_planner_probes_the_three_chunk_indexes(conn, stored):
    conn.autocommit = True
    conn.execute("vacuum analyze media.image")  # sets the visibility map so index-only scans pay off
    plan = explain(conn, QUERIES[1], 8)
    for chunk in range(3):
        assert f"Index Only Scan using image_phash_c{chunk}_idx" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_chunk_flips_beyond_the_radius_are_not_returned(conn, stored):
    # 9 bits split 3/3/3 defeats the ⌊8/3⌋ = 2 probes, and must not show up at radius 8 either way.
    query = QUERIES[4]
    far = _flip(query, sum(1 << (shift + p) for shift, _ in CHUNKS for p in range(3)))
    _insert(conn, [far])
    assert far not in {n.phash for n in find_near_duplicates(conn, query, 8)}
    assert far in {n.phash for n in find_near_duplicates(conn, query, 9)}


def test_every_split_of_eight_flips_is_found_at_radius_eight(conn):
    # Every split of 8 flips over the three chunks (45), for the tight case r = 8.
    query = QUERIES[3]
    variants = []
    for split in {(a, b, 8 - a - b) for a in range(9) for b in range(9 - a)}:
        mask = 0
        for (shift, _), flips in zip(CHUNKS, split, strict=True):
            mask |= sum(1 << (shift + p) for p in range(flips))
        variants.append(_flip(query, mask))
    _insert(conn, variants)
    found = {n.phash for n in find_near_duplicates(conn, query, 8)}
    assert found == set(variants)
