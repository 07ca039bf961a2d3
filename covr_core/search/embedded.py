"""The embedded default: the copies index as a Postgres table with a weighted tsvector, in the same database.

Ranking, best first: every query word matched without a typo; then the sort asked for; then a title equal to the
query; then the words as typed in the title or authors; then the last word found whole, not only as a prefix; then
ts_rank over the weights title 1.0 > authors 0.4 > tags 0.2 > notes 0.1; then the shorter title; then
the newest. The title and authors are indexed folded, so they are the search_terms already (a search_terms match is
a title or author match, ranked as such) and search_terms are not indexed twice.
The last query word also matches as a prefix, and words of 5 letters or more match dictionary terms one edit away
(two from 9 letters), as Meilisearch does.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.sql import SQL, Literal

from covr_core.catalog.copies import visible_candidates_sql, visible_sql
from covr_core.search.backend import (
    MAX_FACET_VALUES,
    MAX_TOTAL_HITS,
    Connect,
    ReindexReport,
    Scope,
    SearchBackend,
    SearchRequest,
    SearchResult,
    SyncReport,
)
from covr_core.search.dictionary import TermDictionary
from covr_core.search.document import FIELDS, FILTERABLE, MODEL
from covr_core.search.query import ARRAY_FIELDS, FOLDED_ARRAYS, ParsedQuery, Sort, folded_array_sql, to_sql

TABLE, TERMS = "search.copy_document", "search.term"
NEXT_TABLE, NEXT_TERMS = "search.copy_document_next", "search.term_next"
# Shared with the search-sync consumer: a reindex holds it from its snapshot to its swap, so no sync round writes
# into the table being replaced (events committed meanwhile wait, then apply to the new one).
SYNC_LOCK_KEY = 0x636F7672_73  # "covr" "s"

# A reindex loads its documents in this many shares at once, one connection each, all reading the snapshot the first
# exports (as pg_dump -j does): Postgres 16 never runs INSERT ... SELECT in parallel, and building the tsvectors is
# most of a reindex. 100k copies on 2 cores: 3.4-4.8 s in one statement, 1.9-2.3 s in two (same process, same data).
LOAD_SHARES = 2
# The columns the planner estimates searches with (the text match, filters, a sync's copy ids): ANALYZE after a
# reindex samples only these. The rest are only read; their statistics cost 0.4 of 0.7 s at 100k.
_PLANNED_COLUMNS = ", ".join(dict.fromkeys(("copy_id", "tsv", *(FOLDED_ARRAYS.get(f, f) for f in FILTERABLE))))

# The title and author lexemes of a document's tsvector (weights A and B, positions kept), as indexed by
# search.create_document_indexes: written exactly so, the planner uses that expression index.
_TITLE_AUTHOR_TSV = "ts_filter(d.tsv, '{a,b}')"
# ts_rank's weights, in its order {D, C, B, A}: notes, tags, authors, title.
WEIGHTS = "{0.1, 0.2, 0.4, 1.0}"

_DOC_COLUMNS = ", ".join(FIELDS) + ", title_key, tag_keys, tsv"
_DOC_SELECT = f"""
    m.copy_id, m.book_id, m.title, m.authors, m.isbn13, m.published_year, m.tags, m.language, m.status,
    m.current_holder_id, m.current_holder_name, m.owner_id, m.condition_grade, m.has_images, m.notes, m.created_at,
    m.updated_at, m.search_terms,
    search.fold_text(m.title) as title_key,
    {folded_array_sql("m.tags")} as tag_keys,
    setweight(to_tsvector('simple', search.fold_text(m.title)), 'A')
    || setweight(to_tsvector('simple', search.fold_text(array_to_string(m.authors, ' '))), 'B')
    || setweight(to_tsvector('simple', search.fold_text(array_to_string(m.tags, ' '))), 'C')
    || setweight(to_tsvector('simple', coalesce(search.fold_text(m.notes), '')), 'D') as tsv
"""
_UPDATE_SET = ", ".join(f"{c} = excluded.{c}" for c in (*FIELDS[1:], "title_key", "tag_keys", "tsv")) \
    + ", indexed_at = now()"

_TIME = "to_char({} at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
_HIT_JSON = "json_build_object(" + ", ".join(
    f"'{f}', " + (_TIME.format(f"p.{f}") if f.endswith("_at") else f"p.{f}") for f in FIELDS
) + ")"

_SORT_COLUMN = {"title": "title_key", "published_year": "published_year", "condition_grade": "condition_grade",
                "created_at": "created_at"}


def _lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def tsqueries(query: ParsedQuery, dictionary: TermDictionary | None) -> tuple[str, str, str]:
    """(matching, typo-free, whole-word) tsquery texts: each term's word, its dictionary neighbours and, for the last
    word typed, its prefix; the typo-free one keeps only the words as typed; the whole-word one not even the prefix."""
    matching, exact, whole = [], [], []
    for term in query.terms:
        if term.quoted:
            phrase = " <-> ".join(_lexeme(w) for w in term.words)
            matching.append(f"({phrase})")
            exact.append(f"({phrase})")
            whole.append(f"({phrase})")
            continue
        word = term.words[0]
        alternatives = [_lexeme(word)]
        if term.prefix:
            alternatives.append(_lexeme(word) + ":*")
        if dictionary is not None:
            alternatives.extend(_lexeme(t) for t in dictionary.expand(word, term.typos))
        matching.append("(" + " | ".join(alternatives) + ")")
        exact.append(_lexeme(word) + (":*" if term.prefix else ""))
        whole.append(_lexeme(word))
    return " & ".join(matching), " & ".join(exact), " & ".join(whole)


# The ranking keys every copy of the first tier satisfies (the words as typed in its title or authors, hence
# anywhere in its document).
_EXACT_KEY = "m.tsv @@ %(exact)s::tsquery"
_TITLE_AUTHOR_KEY = f"{_TITLE_AUTHOR_TSV.replace('d.', 'm.')} @@ %(exact)s::tsquery"
_FIRST_TIER_KEYS = frozenset({_EXACT_KEY, _TITLE_AUTHOR_KEY})
# Meilisearch's "exactness" rule, coarsely: the last word typed found whole, above the longer words it only begins
# ("river": River Story above Riverside). Anywhere in the document, as Meilisearch's rule: reading the title and
# authors' lexemes apart cost a tenth of a 1-word search.
_WHOLE_WORDS_KEY = "m.tsv @@ %(whole)s::tsquery"


def _order(query: ParsedQuery, sort: tuple[Sort, ...], params: dict) -> list[tuple[str, str]]:
    """The ranking keys, best first, as (expression over the matches `m`, direction)."""
    keys = []
    if not query.is_placeholder:
        keys.append((_EXACT_KEY, "desc"))
    for s in sort:
        keys.append((f"m.{_SORT_COLUMN[s.field]}", "desc nulls last" if s.descending else "asc nulls last"))
    if not query.is_placeholder:
        params["qkey"] = query.key
        keys.append(("m.title_key = %(qkey)s", "desc"))
        # Meilisearch's "attribute" rule, coarsely: the words as typed in the title or authors, above the rest. After
        # the keys before it this splits the matches cleanly: a copy without its words in title or authors cannot
        # have the query as its title, so everything that has them ranks first (PostgresSearch._run relies on it).
        keys.append((_TITLE_AUTHOR_KEY, "desc"))
        if query.terms[-1].prefix:
            keys.append((_WHOLE_WORDS_KEY, "desc"))
        keys.append((f"ts_rank('{WEIGHTS}', m.tsv, %(tsq)s::tsquery)", "desc"))
        keys.append(("length(m.title_key)", "asc"))  # among equals, the title with the least besides the words
    keys.extend([("m.created_at", "desc"), ("m.copy_id", "asc")])
    return keys


def _facet_sql(name: str) -> str:
    value = "t.v" if name in ARRAY_FIELDS else f"m.{name}::text"
    source = f"matched m cross join lateral unnest(m.{name}) as t(v)" if name in ARRAY_FIELDS else "matched m"
    return (
        f"(select coalesce(json_object_agg(f.v, f.n order by f.n desc, f.v), '{{}}'::json) from ("
        f"select {value} as v, count(*) as n from {source} where {value} is not null "
        f"group by 1 order by 2 desc, 1 limit {MAX_FACET_VALUES}) f)"
    )


class PostgresSearch(SearchBackend):
    """search.copy_document and search.term, written by the search-sync consumer and swapped whole by a reindex."""

    name = "postgres"

    def __init__(self, connect: Connect, *, dictionary: TermDictionary | None = None) -> None:
        self._connect = connect
        self.dictionary = dictionary or TermDictionary()

    def describe(self) -> str:
        return f"Postgres full-text {TABLE} (weighted tsvector, typo dictionary {TERMS})"

    # --- searching ------------------------------------------------------------------------------------------------

    def search(self, request: SearchRequest, scope: Scope) -> SearchResult:
        started = time.perf_counter()
        with self._connect() as conn:
            query = request.query
            if not query.is_placeholder:
                self.dictionary.refresh(conn)
            row = self._run(conn, request, scope, query)
            # Nothing has every word: first drop the words no indexed term can match (a typo beyond its budget),
            # then, as Meilisearch's "last" matching strategy does, the last words one by one.
            if row["total"] == 0 and len(query.terms) > 1:
                known = query.only(lambda t: t.quoted or self.dictionary.knows(t.words[0], t.typos, prefix=t.prefix))
                if known.terms and len(known.terms) < len(query.terms):
                    query = known
                    row = self._run(conn, request, scope, query)
            while row["total"] == 0 and len(query.terms) > 1:
                query = query.without_last()
                row = self._run(conn, request, scope, query)
        return SearchResult(hits=list(row["hits"]), total=min(row["total"], MAX_TOTAL_HITS),
                            facets=dict(row["facets"] or {}), took_ms=(time.perf_counter() - started) * 1000,
                            backend=self.name)

    def _run(self, conn: psycopg.Connection, request: SearchRequest, scope: Scope, query: ParsedQuery) -> dict:
        params: dict[str, Any] = {"limit": request.limit, "offset": request.offset}
        narrowing = []  # what the caller may see, and the filter
        if not scope.is_everything:
            params["viewer"] = scope.viewer_id
            narrowing.append(visible_candidates_sql("d", "%(viewer)s::uuid"))
            narrowing.append(visible_sql("d", "%(viewer)s::uuid"))
        if request.filter is not None:
            narrowing.append(to_sql(request.filter, params, "d"))
        where = narrowing
        if not query.is_placeholder:
            params["tsq"], params["exact"], params["whole"] = tsqueries(query, self.dictionary)
            where = ["d.tsv @@ %(tsq)s::tsquery", *narrowing]
        keys = _order(query, request.sort, params)
        order = ", ".join(f"r.k{i} {direction}" for i, (_, direction) in enumerate(keys))
        facets = ", ".join(f"'{name}', {_facet_sql(name)}" for name in request.facets)
        # The matches carry only what ranking, sorting and facets read; the page's documents are read whole at the
        # end. Without facets the matches are not materialized: the page reads them lazily (browsing with no words
        # reads the newest rows straight off an index).
        columns = ["copy_id", "created_at", "title_key", *(_SORT_COLUMN[s.field] for s in request.sort),
                   *request.facets]
        if not query.is_placeholder:
            columns.append("tsv")
        columns = ", ".join(f"d.{c}" for c in dict.fromkeys(columns))
        matching = " and ".join(where) or "true"
        # Words: every match is ranked anyway, so it is counted in the same pass, over the ranking keys rather than
        # the matches' tsvectors (numbering 35,000 of those spilled to disk and doubled the query's time). No words:
        # counting every copy would read the whole table for a page off an index, so the count stops at the cap.
        total = "null::bigint" if query.is_placeholder else "count(*) over ()"
        capped = f"(select count(*) from (select 1 from {TABLE} d where {matching} limit {MAX_TOTAL_HITS}) c)"

        def ranked(source: str, only_if: str = "true", known: frozenset = frozenset(), also: str = "") -> str:
            """The rows of `source` as copy_id and ranking keys k0, k1, ...; `known` keys hold for every row (true),
            so they are not computed per row."""
            keyed = ", ".join(f"{'true' if expr in known else expr} as k{i}" for i, (expr, _) in enumerate(keys))
            return f"select m.copy_id, {also}{keyed} from {source} m where {only_if}"

        def page(rows: str) -> str:
            return f"""
                select q.copy_id, q.total, row_number() over () as ord
                from (select r.copy_id, {total} as total from ({rows}) r
                      order by {order} limit %(limit)s offset %(offset)s) q"""

        # A member sees their own and their contacts' copies, found through the owner and holder indexes: ranking
        # every visible match costs less than the tiers below (measured at 100k copies, ten contacts each: p50 a
        # third less for one word, two words and a filter). The tiers pay where a common word matches tens of
        # thousands of copies: over everything.
        tiered = scope.is_everything and not query.is_placeholder and not request.sort and not request.facets
        if tiered:
            # Ranking puts every copy whose title or authors hold the query's words as typed above every other match
            # (see _order). So when those alone fill the page, it is the page: found through the title and author
            # index, without reading the thousands of copies a common word has in its tags or notes. Only when
            # they do not is every match ranked (Postgres runs that part only then: its condition is evaluated
            # once, before its scan). The total is the first tier's when that reaches the cap.
            first_tier = " and ".join([f"{_TITLE_AUTHOR_TSV} @@ %(exact)s::tsquery", *narrowing])
            ctes = f"""
                first_tier as not materialized (select {columns} from {TABLE} d where {first_tier}),
                matched as not materialized (select {columns} from {TABLE} d where {matching}),
                first_page as materialized ({page(ranked("first_tier", known=_FIRST_TIER_KEYS))}),
                full_page as materialized (
                    {page(ranked("matched", "(select count(*) from first_page) < %(limit)s"))}
                ),
                page as (
                    select * from first_page where (select count(*) from first_page) = %(limit)s
                    union all select * from full_page
                )"""
            counted = f"""(case when (select count(*) from full_page) > 0 then (select max(total) from full_page)
                               when (select max(total) from first_page) >= {MAX_TOTAL_HITS} then {MAX_TOTAL_HITS}
                               else {capped} end)"""
        elif request.facets:
            # Facets count over every match, so the matches are kept: as their ranking keys and facet values only
            # (their tsvectors, kept too, spilled to disk past a few thousand matches).
            values = "".join(f"m.{name}, " for name in request.facets)
            ctes = f"""
                matched as materialized ({ranked(f"(select {columns} from {TABLE} d where {matching})", also=values)}),
                page as ({page("select * from matched")})"""
            counted = f"coalesce((select max(total) from page), (select count(*) from (select 1 from matched " \
                      f"limit {MAX_TOTAL_HITS}) c))"
        else:
            ctes = f"""
                matched as not materialized (select {columns} from {TABLE} d where {matching}),
                page as ({page(ranked("matched"))})"""
            counted = f"coalesce((select max(total) from page), {capped})"
        # One statement: hits, total and facets all read one table (a swap between statements cannot split them).
        sql = f"""
            with {ctes}
            select
                (select coalesce(json_agg({_HIT_JSON} order by k.ord), '[]'::json)
                 from page k join {TABLE} p on p.copy_id = k.copy_id) as hits,
                {counted}::bigint as total,
                {f"json_build_object({facets})" if facets else "'{}'::json"} as facets
        """
        return conn.cursor(row_factory=dict_row).execute(sql, params).fetchone()

    # --- writing --------------------------------------------------------------------------------------------------

    def apply(self, conn: psycopg.Connection, copy_ids: Sequence[str]) -> SyncReport:
        ids = sorted({str(i) for i in copy_ids})
        if not ids:
            return SyncReport()
        cur = conn.cursor(row_factory=dict_row)
        upserted = cur.execute(
            f"""
            with up as (
                insert into {TABLE} ({_DOC_COLUMNS})
                select {_DOC_SELECT} from {MODEL} m where m.copy_id = any(%(ids)s::uuid[])
                on conflict (copy_id) do update set {_UPDATE_SET}
                returning copy_id, tsv
            ),
            terms as (
                insert into {TERMS} (term)
                select distinct w from up cross join lateral unnest(tsvector_to_array(up.tsv)) as w
                on conflict (term) do nothing
            )
            select count(*)::int as n from up
            """,
            {"ids": ids},
        ).fetchone()["n"]
        deleted = cur.execute(
            f"""
            delete from {TABLE} d where d.copy_id = any(%(ids)s::uuid[])
              and not exists (select from {MODEL} m where m.copy_id = d.copy_id)
            """,
            {"ids": ids},
        ).rowcount
        return SyncReport(upserted=upserted, deleted=deleted)

    def reindex(self, connect: Connect | None = None) -> ReindexReport:
        """Build search.copy_document_next from the model, then rename it into place in one short transaction.

        Holds LOAD_SHARES connections from `connect` at once while it loads (a pool needs that many)."""
        started = time.perf_counter()
        with (connect or self._connect)() as conn:
            conn.execute("select pg_advisory_lock(%s)", (SYNC_LOCK_KEY,))
            try:
                cur = conn.cursor(row_factory=dict_row)
                # The GIN index builds in memory at once instead of in passes; for this session only.
                cur.execute("set maintenance_work_mem = '256MB'")
                generation = cur.execute("select generation from search.state").fetchone()["generation"] + 1
                cur.execute(f"drop table if exists {NEXT_TABLE}, {NEXT_TERMS}")
                cur.execute("select search.create_document_tables(%s, %s, %s)", (NEXT_TABLE, NEXT_TERMS, generation))
                documents = self._load(conn, connect or self._connect)
                cur.execute(
                    f"insert into {NEXT_TERMS} (term) select distinct w from {NEXT_TABLE} d "
                    f"cross join lateral unnest(tsvector_to_array(d.tsv)) as w"
                )
                cur.execute("select search.create_document_indexes(%s, %s, %s)", (NEXT_TABLE, NEXT_TERMS, generation))
                cur.execute(f"analyze {NEXT_TABLE} ({_PLANNED_COLUMNS})")
                with conn.transaction():
                    cur.execute(f"alter table {TABLE} rename to copy_document_old")
                    cur.execute(f"alter table {NEXT_TABLE} rename to copy_document")
                    cur.execute(f"alter table {TERMS} rename to term_old")
                    cur.execute(f"alter table {NEXT_TERMS} rename to term")
                    cur.execute("drop table search.copy_document_old, search.term_old")
                    cur.execute("update search.state set generation = %s, built_at = now(), documents = %s",
                                (generation, documents))
            finally:
                conn.execute("select pg_advisory_unlock(%s)", (SYNC_LOCK_KEY,))
        return ReindexReport(documents=documents, seconds=time.perf_counter() - started,
                             target=f"{TABLE} (generation {generation})")

    @staticmethod
    def _load(lead: psycopg.Connection, connect: Connect) -> int:
        """Fill the next table from the model in LOAD_SHARES statements at once, in one snapshot of the catalog."""
        # uuid_hash spreads copies evenly whatever their ids; the mask keeps the remainder non-negative.
        insert = (f"insert into {NEXT_TABLE} ({_DOC_COLUMNS}) select {_DOC_SELECT} from {MODEL} m "
                  "where (uuid_hash(m.copy_id) & 2147483647) %% %(shares)s = %(share)s")

        def load_share(snapshot: str, share: int) -> int:
            with connect() as conn, conn.transaction():
                conn.execute("set transaction isolation level repeatable read")
                conn.execute(SQL("set transaction snapshot {}").format(Literal(snapshot)))
                return conn.execute(insert, {"shares": LOAD_SHARES, "share": share}).rowcount

        with lead.transaction():
            lead.execute("set transaction isolation level repeatable read")
            snapshot = lead.execute("select pg_export_snapshot() as s").fetchone()["s"]
            with ThreadPoolExecutor(max(LOAD_SHARES - 1, 1), thread_name_prefix="covr-reindex") as helpers:
                shares = [helpers.submit(load_share, snapshot, share) for share in range(1, LOAD_SHARES)]
                documents = lead.execute(insert, {"shares": LOAD_SHARES, "share": 0}).rowcount
                return documents + sum(share.result() for share in shares)

    def is_built(self) -> bool:
        with self._connect() as conn:
            row = conn.cursor(row_factory=dict_row).execute("select built_at from search.state").fetchone()
        return row is not None and row["built_at"] is not None

    # --- reading for checks ---------------------------------------------------------------------------------------

    def count(self) -> int:
        with self._connect() as conn:
            return conn.cursor(row_factory=dict_row).execute(f"select count(*)::int as n from {TABLE}").fetchone()["n"]

    def documents(self, copy_ids: Iterable[str]) -> list[dict[str, Any]]:
        from covr_core.search.document import to_document

        with self._connect() as conn:
            rows = conn.cursor(row_factory=dict_row).execute(
                f"select {', '.join(FIELDS)} from {TABLE} where copy_id = any(%s::uuid[]) order by copy_id",
                ([str(i) for i in copy_ids],),
            ).fetchall()
        return [to_document(r) for r in rows]
