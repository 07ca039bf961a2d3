-- A tag filter lower-cased every document's tags as it read them, 0.55 us a row: 3 ms of a filtered search's p99 over
-- 100k copies (bench/search.py). Documents now keep their tags lower-cased beside them, written by the expression of
-- covr_core/search/query.py folded_array_sql, and a tag filter is one array containment. The live table gets the
-- column filled here; every table a reindex builds has it from the start.
alter table search.copy_document add column tag_keys text[];
update search.copy_document set tag_keys = lower(tags::text)::text[];
alter table search.copy_document alter column tag_keys set not null;

create or replace function search.create_document_tables(documents text, terms text, generation integer) returns void
language plpgsql as $$
begin
    execute format($ddl$
        create table %1$s (
            copy_id             uuid not null,
            book_id             uuid not null,
            title               text not null,
            authors             text[] not null,
            isbn13              text,
            published_year      smallint,
            tags                text[] not null,
            language            text,
            status              text not null,
            current_holder_id   uuid not null,
            current_holder_name text not null,
            owner_id            uuid not null,
            condition_grade     smallint,
            has_images          boolean not null,
            notes               text,
            created_at          timestamptz not null,
            updated_at          timestamptz not null,
            search_terms        text[] not null,
            -- The folded title: exact-title ranking and the title sort.
            title_key           text not null,
            -- The tags lower-cased (covr_core/search/query.py folded_array_sql): what a tag filter compares.
            tag_keys            text[] not null,
            -- Folded title A > folded authors B (together, the search_terms) > tags C > notes D.
            tsv                 tsvector not null,
            indexed_at          timestamptz not null default now()
        )$ddl$, documents);
    execute format($ddl$
        create table %1$s (
            term text not null,
            seq  bigint not null default nextval('search.term_seq'),
            constraint term_g%2$s_pkey primary key (term)
        )$ddl$, terms, generation);
end
$$;
