"""Exact pHash near-duplicate lookup in media.image by multi-index hashing over three indexed chunks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from itertools import combinations
from uuid import UUID

from psycopg.rows import tuple_row

# (shift, bits) of each chunk, most significant first; must match media.image.phash_c0..phash_c2.
# Three wide chunks keep both the probe lists (⌊r/3⌋-bit neighbourhoods) and the random candidate
# rate (about 232 / 2**21 per row per chunk at r = 8) small; 8-bit chunks or r + 1 exact chunks
# make either the candidates or the probes explode.
CHUNKS: tuple[tuple[int, int], ...] = ((43, 21), (22, 21), (0, 22))
HASH_BITS = 64
MASK64 = (1 << HASH_BITS) - 1
# Beyond this the per-chunk neighbourhoods (C(22, 4) + ... ≈ 9k values) stop being a quick lookup.
MAX_RADIUS = 11


@dataclass(frozen=True)
class NearDuplicate:
    image_id: UUID
    phash: int  # signed int64, as stored
    distance: int


def as_int64(phash: int) -> int:
    """The signed int64 that Postgres stores for a 64-bit hash given signed or unsigned."""
    if not -(1 << 63) <= phash <= MASK64:
        raise ValueError(f"pHash {phash} does not fit in 64 bits")
    phash &= MASK64
    return phash - (1 << HASH_BITS) if phash >> 63 else phash


def chunks_of(phash: int) -> tuple[int, int, int]:
    """The three chunk values, equal to the generated columns phash_c0, phash_c1, phash_c2."""
    phash = as_int64(phash)
    # Python's >> on a negative int is arithmetic like Postgres's; the mask drops the sign fill.
    c0, c1, c2 = ((phash >> shift) & ((1 << bits) - 1) for shift, bits in CHUNKS)
    return c0, c1, c2


def neighbours(value: int, bits: int, radius: int) -> list[int]:
    """Every value of a `bits`-wide field within Hamming distance `radius` of `value`, itself first."""
    if not 0 <= value < 1 << bits:
        raise ValueError(f"chunk value {value} does not fit in {bits} bits")
    if radius < 0:
        raise ValueError(f"radius {radius} is negative")
    return [value ^ mask for mask in _flip_masks(bits, min(radius, bits))]


@cache
def _flip_masks(bits: int, radius: int) -> tuple[int, ...]:
    # Cached: every lookup needs the same few masks, and building them costs ~0.5 ms at r = 8, ~6 ms at r = 10.
    masks = [0]
    for flips in range(1, radius + 1):
        masks.extend(sum(1 << p for p in positions) for positions in combinations(range(bits), flips))
    return tuple(masks)


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes, signed or unsigned."""
    return ((a ^ b) & MASK64).bit_count()


# One index-only scan per chunk column (the partial covering indexes need `phash is not null`);
# the exact distance is checked on the few candidates, and only the survivors touch the heap for
# status, which the covering indexes do not carry. Parameters go in binary (%b): as text, printing and
# parsing the ~700 probe values took about a third of a lookup.
_MIH_CANDIDATES = """
    with candidate as (
        select image_id, phash from media.image
        where phash is not null and phash_c0 = any(%(c0)b::integer[])
        union
        select image_id, phash from media.image
        where phash is not null and phash_c1 = any(%(c1)b::integer[])
        union
        select image_id, phash from media.image
        where phash is not null and phash_c2 = any(%(c2)b::integer[])
    ),
    near as (
        select image_id, phash, bit_count((phash # %(q)b::bigint)::bit(64))::integer as distance
        from candidate
    )
"""
_MIH_ACCEPTED = (
    _MIH_CANDIDATES
    + """
    select image_id, phash, distance
    from near
    where distance <= %(r)b
      -- A per-row subplan keeps the status check on the primary key for the few survivors; as a
      -- join the planner may hash it against a scan of the whole table.
      and (select image.status from media.image as image where image.image_id = near.image_id) = 'accepted'
    order by distance, image_id
    limit %(limit)b
"""
)
_MIH_ANY_STATUS = (
    _MIH_CANDIDATES
    + """
    select image_id, phash, distance
    from near
    where distance <= %(r)b
    order by distance, image_id
    limit %(limit)b
"""
)
_BRUTEFORCE = """
    select image_id, phash, bit_count((phash # %(q)s::bigint)::bit(64))::integer as distance
    from media.image
    where phash is not null
      and status = 'accepted'
      and bit_count((phash # %(q)s::bigint)::bit(64)) <= %(r)s
    order by distance, image_id
"""


def find_near_duplicates(
    conn, phash: int, radius: int, *, limit: int | None = None, accepted_only: bool = True
) -> list[NearDuplicate]:
    """Images whose pHash is within `radius` bits of `phash`, nearest first; exact, not approximate.

    Pigeonhole: if two hashes differ in at most r bits, one of the three chunks differs in at most
    ⌊r/3⌋, so probing each chunk index with its ⌊r/3⌋-neighbourhood finds every true match.
    Index-only scans rely on the visibility map, which (auto)vacuum maintains.
    """
    sql, params = _lookup(phash, radius, limit=limit, accepted_only=accepted_only)
    with conn.cursor(row_factory=tuple_row, binary=True) as cur:
        # Prepared at once: with the probes as parameters Postgres soon settles on a generic plan,
        # and planning ~700 literal array elements per call would cost about as much as the scans.
        cur.execute(sql, params, prepare=True)
        return [NearDuplicate(*row) for row in cur.fetchall()]


def explain(conn, phash: int, radius: int, *, accepted_only: bool = True, analyze: bool = False) -> str:
    """The plan Postgres picks for a lookup, to check that it probes the chunk indexes.

    With `analyze` the lookup runs, and the plan shows heap fetches (0 once vacuum has set the
    visibility map) and how many index entries failed the exact distance check.
    """
    sql, params = _lookup(phash, radius, limit=None, accepted_only=accepted_only)
    options = "analyze, costs off, timing off, summary off" if analyze else "costs off"
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(f"explain ({options}) " + sql, params)
        return "\n".join(line for (line,) in cur.fetchall())


def _lookup(phash: int, radius: int, *, limit: int | None, accepted_only: bool) -> tuple[str, dict]:
    if not 0 <= radius <= MAX_RADIUS:
        raise ValueError(
            f"radius {radius} is outside 0..{MAX_RADIUS}, the range the chunk indexes answer quickly; "
            f"use find_near_duplicates_bruteforce for wider searches"
        )
    if limit is not None and limit < 0:
        raise ValueError(f"limit {limit} is negative")
    query = as_int64(phash)
    probes = {
        f"c{i}": neighbours(chunk, bits, radius // len(CHUNKS))
        for i, (chunk, (_, bits)) in enumerate(zip(chunks_of(query), CHUNKS, strict=True))
    }
    sql = _MIH_ACCEPTED if accepted_only else _MIH_ANY_STATUS
    return sql, {**probes, "q": query, "r": radius, "limit": limit}


def find_near_duplicates_bruteforce(conn, phash: int, radius: int) -> list[NearDuplicate]:
    """The same answer as find_near_duplicates (accepted images) by scanning every row: the baseline."""
    if not 0 <= radius <= HASH_BITS:
        raise ValueError(f"radius {radius} is outside 0..{HASH_BITS}")
    with conn.cursor(row_factory=tuple_row) as cur:
        cur.execute(_BRUTEFORCE, {"q": as_int64(phash), "r": radius})
        return [NearDuplicate(*row) for row in cur.fetchall()]
