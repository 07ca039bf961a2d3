-- Ingest bookkeeping: batches, identification results and dedup decisions, each with its evidence.
create table ingest.batch (
    batch_id    uuid primary key default gen_random_uuid(),
    run_id      text,
    object_keys text[] not null,
    created_at  timestamptz not null default now()
);

create table ingest.identification (
    image_id   uuid primary key references media.image,
    run_id     text,
    book_id    uuid references catalog.book,
    isbn13     text check (isbn13 is null or catalog.is_valid_isbn13(isbn13)),
    title      text,
    confidence real not null check (confidence between 0 and 1),
    source     text check (source in ('isbn', 'ocr', 'embedding')),
    evidence   jsonb not null default '{}',
    created_at timestamptz not null default now(),
    check (source is not null or (book_id is null and isbn13 is null))
);
create index identification_book_idx on ingest.identification (book_id);

create table ingest.dedup_result (
    image_id         uuid primary key references media.image,
    run_id           text,
    decision         text not null
                     check (decision in ('new_book', 'new_copy', 'existing_copy', 'exchange_suspected', 'ignore')),
    match_reason     text not null check (match_reason in ('exact_hash', 'phash_match', 'embedding_similarity', 'none')),
    book_id          uuid references catalog.book,
    copy_id          uuid references catalog.copy,
    matched_copy_id  uuid references catalog.copy,
    matched_image_id uuid references media.image,
    evidence         jsonb not null default '{}',
    created_at       timestamptz not null default now()
);

-- Open Library answers, so a re-run or a second copy of a book costs no request.
create table ingest.openlibrary_cache (
    isbn13      text primary key check (catalog.is_valid_isbn13(isbn13)),
    http_status smallint not null,
    body        jsonb,
    fetched_at  timestamptz not null default now()
);
