-- The search read model in Postgres (the embedded default of the copies index), the events that keep it in sync,
-- an updated_at that really moves, and the holder and status of each cover vector.
create schema if not exists search;

-- Accent and case folding shared by documents and queries (covr_core/search/document.py `fold` is its twin): NFD,
-- combining marks dropped, lower case, the letters NFD leaves alone spelled out, anything but a letter or digit a space.
create function search.fold_text(value text) returns text
language sql immutable strict parallel safe
as $$
    select btrim(regexp_replace(
        replace(replace(replace(replace(translate(
            lower(regexp_replace(normalize(value, NFD), '[\u0300-\u036f]', '', 'g')),
            'øłđħı', 'oldhi'), 'æ', 'ae'), 'œ', 'oe'), 'ß', 'ss'), 'þ', 'th'),
        '[^[:alnum:]]+', ' ', 'g'))
$$;

-- catalog.copy.updated_at and catalog.book.updated_at move on every change, whoever writes the row; a writer that
-- sets updated_at itself keeps its value.
create function catalog.touch_updated_at() returns trigger
language plpgsql as $$
begin
    if new.updated_at is not distinct from old.updated_at then
        new.updated_at := now();
    end if;
    return new;
end
$$;
create trigger copy_touch_updated_at before update on catalog.copy
    for each row when (old.* is distinct from new.*) execute function catalog.touch_updated_at();
create trigger book_touch_updated_at before update on catalog.book
    for each row when (old.* is distinct from new.*) execute function catalog.touch_updated_at();

-- The live documents of the embedded backend, and its term dictionary (typo tolerance without pg_trgm). A reindex
-- builds a table of the same shape under another name and swaps it in (covr_core/search/embedded.py); this function
-- is the one definition of that shape. Index names carry the generation, so two generations never clash.
create function search.create_document_tables(documents text, terms text, generation integer) returns void
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
            indexed_at          timestamptz not null default now(),
            constraint doc_g%3$s_pkey primary key (copy_id)
        )$ddl$, documents, terms, generation);
    execute format($ddl$
        create table %1$s (
            term text not null,
            seq  bigint not null default nextval('search.term_seq'),
            constraint term_g%2$s_pkey primary key (term)
        )$ddl$, terms, generation);
end
$$;

-- Secondary indexes, created after a bulk load (a GIN index builds far faster at once than row by row).
create function search.create_document_indexes(documents text, terms text, generation integer) returns void
language plpgsql as $$
begin
    execute format('create index doc_g%2$s_tsv_idx on %1$s using gin (tsv)', documents, generation);
    execute format('create index doc_g%2$s_holder_idx on %1$s (current_holder_id)', documents, generation);
    execute format('create index doc_g%2$s_owner_idx on %1$s (owner_id)', documents, generation);
    execute format('create index doc_g%2$s_created_idx on %1$s (created_at desc, copy_id)', documents, generation);
    execute format('create index term_g%2$s_seq_idx on %1$s (seq)', terms, generation);
end
$$;

-- Dictionary rows are numbered so a searching process can load only what was added since it last looked.
create sequence search.term_seq;

select search.create_document_tables('search.copy_document', 'search.term', 1);
select search.create_document_indexes('search.copy_document', 'search.term', 1);

-- One row: the generation now live (bumped by every swap) and when the index was last built in full.
create table search.state (
    id         boolean primary key default true check (id),
    generation integer not null default 1 check (generation >= 1),
    built_at   timestamptz,
    documents  bigint
);
insert into search.state default values;

-- The holder and status of each cover vector's copy, so similar covers can be restricted to what a member may see;
-- written by the search-sync consumer, rebuilt by the reindex job.
alter table media.cover_embedding add column owner_id uuid;
alter table media.cover_embedding add column holder_id uuid;
alter table media.cover_embedding add column copy_status text;
create index cover_embedding_copy_idx on media.cover_embedding (copy_id);

-- Copy edits, withdrawals, losses, book edits and renames announce themselves, for the search sync.
alter table outbox.event drop constraint event_type_check;
alter table outbox.event add constraint event_type_check check (type in (
    'ImageUploaded', 'BookIdentified', 'DedupResolved', 'RequestCreated', 'ExchangeAccepted', 'ExchangeCompleted',
    'ExchangeSuspected', 'RequestDeclined', 'RequestCancelled', 'ReturnStarted', 'ReturnCancelled',
    'SuspectedExchangeDismissed', 'CopyUpdated', 'CopyWithdrawn', 'CopyLost', 'BookUpdated', 'MemberRenamed'));
