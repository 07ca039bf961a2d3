"""Typo tolerance without pg_trgm: the indexed terms in memory, query words expanded to those within a few edits."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

import psycopg
from rapidfuzz import process
from rapidfuzz.distance import OSA

# The closest alternatives kept per query word; more only slows the tsquery down.
MAX_EXPANSIONS = 24


def expansions(word: str, by_length: dict[int, list[str]], typos: int, *, limit: int = MAX_EXPANSIONS) -> list[str]:
    """Dictionary terms within `typos` edits of `word` (itself excluded), closest first.

    Edits are optimal string alignment: an insertion, a deletion, a substitution or a swap of two neighbours
    each count one, as in Meilisearch (a plain Levenshtein distance would count a swap twice).
    """
    if typos <= 0:
        return []
    found: list[tuple[int, str]] = []
    for length in range(max(1, len(word) - typos), len(word) + typos + 1):
        choices = by_length.get(length)
        if not choices:
            continue
        for term, distance, _ in process.extract(word, choices, scorer=OSA.distance, score_cutoff=typos,
                                                 limit=limit):
            if term != word:
                found.append((distance, term))
    found.sort()
    return [term for _, term in found[:limit]]


class TermDictionary:
    """search.term, loaded once and then only what was added since (terms are numbered); reloaded in full when a
    reindex swaps a new generation in. Safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation: int | None = None
        self._seq = 0
        self._terms: set[str] = set()
        self._sorted: list[str] = []
        self._by_length: dict[int, list[str]] = defaultdict(list)

    def refresh(self, conn: psycopg.Connection) -> None:
        row = conn.execute(
            "select s.generation, (select coalesce(max(seq), 0) from search.term) as seq from search.state s"
        ).fetchone()
        generation, seq = (row["generation"], row["seq"]) if isinstance(row, dict) else row
        if generation == self._generation and seq <= self._seq:
            return
        with self._lock:
            if generation != self._generation:
                self._terms, self._sorted, self._by_length, self._seq = set(), [], defaultdict(list), 0
            rows = conn.execute("select term, seq from search.term where seq > %s order by seq", (self._seq,))
            added = []
            for r in rows:
                term, term_seq = (r["term"], r["seq"]) if isinstance(r, dict) else r
                if term not in self._terms:
                    self._terms.add(term)
                    self._by_length[len(term)].append(term)
                    added.append(term)
                self._seq = max(self._seq, term_seq)
            if len(added) > 100 or not self._sorted:
                self._sorted = sorted(self._terms)
            else:
                for term in added:
                    bisect.insort(self._sorted, term)
            self._generation = generation

    def __contains__(self, term: str) -> bool:
        return term in self._terms

    def __len__(self) -> int:
        return len(self._terms)

    def expand(self, word: str, typos: int) -> list[str]:
        return expansions(word, self._by_length, typos)

    def has_prefix(self, prefix: str) -> bool:
        i = bisect.bisect_left(self._sorted, prefix)
        return i < len(self._sorted) and self._sorted[i].startswith(prefix)

    def knows(self, word: str, typos: int, *, prefix: bool = False) -> bool:
        """Whether any indexed term can match the word: itself, a neighbour within its typos, or (as a prefix) a
        longer term. A query word that matches nothing is the first to drop when nothing has every word."""
        return word in self._terms or (prefix and self.has_prefix(word)) or bool(self.expand(word, typos))
