-- Books (editions, keyed by ISBN-13 when known) and the physical copies members hold.
create table catalog.book (
    book_id         uuid primary key default gen_random_uuid(),
    isbn13          text unique check (isbn13 is null or catalog.is_valid_isbn13(isbn13)),
    title           text not null check (length(btrim(title)) > 0),
    authors         text[] not null default '{}',
    published_year  smallint check (published_year between 1400 and 2100),
    language        text check (language is null or language ~ '^[a-z]{2,3}$'),
    tags            text[] not null default '{}',
    metadata_source text not null default 'catalog'
                    check (metadata_source in ('catalog', 'openlibrary', 'ocr', 'manual')),
    needs_review    boolean not null default false,
    -- Maintained by trigger: array_to_string is not immutable, so no generated column.
    search_tsv      tsvector not null default ''::tsvector,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create index book_search_idx on catalog.book using gin (search_tsv);

create function catalog.book_search_tsv() returns trigger
language plpgsql as $$
begin
    new.search_tsv :=
        setweight(to_tsvector('simple', coalesce(new.title, '')), 'A')
        || setweight(to_tsvector('simple', array_to_string(new.authors, ' ')), 'B');
    return new;
end
$$;
create trigger book_search_tsv before insert or update of title, authors on catalog.book
    for each row execute function catalog.book_search_tsv();

create table catalog.copy (
    copy_id           uuid primary key default gen_random_uuid(),
    book_id           uuid not null references catalog.book,
    owner_id          uuid not null references contact.user,
    current_holder_id uuid not null references contact.user,
    status            text not null default 'available'
                      check (status in ('available', 'requested', 'on_loan', 'withdrawn', 'lost')),
    condition_grade   smallint check (condition_grade between 1 and 10),
    notes             text,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now()
);
create index copy_book_idx on catalog.copy (book_id);
create index copy_holder_idx on catalog.copy (current_holder_id, book_id);
