-- A reindex loads 100k documents into a table without its primary key, then builds the key at once with the other
-- indexes: maintaining it row by row cost a sixth of the load (3.4 s against 4.0 s at 100k, bench/search.py). The
-- live table keeps the key it has; the tables' shape is otherwise unchanged.
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

create or replace function search.create_document_indexes(documents text, terms text, generation integer) returns void
language plpgsql as $$
begin
    execute format('alter table %1$s add constraint doc_g%2$s_pkey primary key (copy_id)', documents, generation);
    execute format('create index doc_g%2$s_tsv_idx on %1$s using gin (tsv)', documents, generation);
    execute format($ddl$create index doc_g%2$s_tsv_ab_idx on %1$s using gin (ts_filter(tsv, '{a,b}'))$ddl$,
                   documents, generation);
    execute format('create index doc_g%2$s_holder_idx on %1$s (current_holder_id)', documents, generation);
    execute format('create index doc_g%2$s_owner_idx on %1$s (owner_id)', documents, generation);
    execute format('create index doc_g%2$s_created_idx on %1$s (created_at desc, copy_id)', documents, generation);
    execute format('create index term_g%2$s_seq_idx on %1$s (seq)', terms, generation);
end
$$;
