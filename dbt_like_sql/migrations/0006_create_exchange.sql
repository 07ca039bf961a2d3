-- Borrow/exchange requests, hand-overs with condition ratings, and the per-copy provenance ledger.
create table exchange.request (
    request_id   uuid primary key default gen_random_uuid(),
    copy_id      uuid not null references catalog.copy,
    requester_id uuid not null references contact.user,
    holder_id    uuid not null references contact.user,
    kind         text not null default 'borrow' check (kind in ('borrow', 'exchange')),
    status       text not null default 'pending'
                 check (status in ('pending', 'accepted', 'declined', 'cancelled', 'completed')),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    check (requester_id <> holder_id)
);
create index request_copy_idx on exchange.request (copy_id, status);
create unique index request_one_open_per_requester_idx on exchange.request (copy_id, requester_id)
    where status in ('pending', 'accepted');

create table exchange.exchange (
    exchange_id  uuid primary key default gen_random_uuid(),
    request_id   uuid not null unique references exchange.request,
    copy_id      uuid not null references catalog.copy,
    from_user_id uuid not null references contact.user,
    to_user_id   uuid not null references contact.user,
    status       text not null default 'in_progress' check (status in ('in_progress', 'completed', 'cancelled')),
    created_at   timestamptz not null default now(),
    completed_at timestamptz,
    check (from_user_id <> to_user_id),
    check ((status = 'completed') = (completed_at is not null))
);

create table exchange.degradation_rating (
    rating_id   uuid primary key default gen_random_uuid(),
    exchange_id uuid not null references exchange.exchange,
    copy_id     uuid not null references catalog.copy,
    rated_by    uuid not null references contact.user,
    rating      smallint not null check (rating between 1 and 10),
    note        text,
    created_at  timestamptz not null default now(),
    unique (exchange_id, rated_by)
);

-- A photo that looks like someone else's copy: both sides confirm or dismiss it.
create table exchange.suspected_exchange (
    suspected_exchange_id uuid primary key default gen_random_uuid(),
    image_id              uuid not null unique references media.image,
    copy_id               uuid not null references catalog.copy,
    uploader_id           uuid not null references contact.user,
    holder_id             uuid not null references contact.user,
    status                text not null default 'pending' check (status in ('pending', 'confirmed', 'dismissed')),
    created_at            timestamptz not null default now(),
    check (uploader_id <> holder_id)
);

create table exchange.ledger_entry (
    entry_id     bigint generated always as identity primary key,
    copy_id      uuid not null references catalog.copy,
    seq          integer not null check (seq >= 1),
    prev_hash    bytea check (prev_hash is null or length(prev_hash) = 32),
    entry_hash   bytea not null check (length(entry_hash) = 32),
    entry_type   text not null check (entry_type in ('created', 'requested', 'accepted', 'handed_over', 'rated',
                                                     'withdrawn')),
    from_user_id uuid references contact.user,
    to_user_id   uuid references contact.user,
    payload      jsonb not null,
    canonical    bytea not null,
    created_at   timestamptz not null default now(),
    unique (copy_id, seq),
    check ((seq = 1) = (prev_hash is null))
);

-- The ledger is append-only: the database refuses edits, whatever the application does.
create function exchange.ledger_is_append_only() returns trigger
language plpgsql as $$
begin
    raise exception 'exchange.ledger_entry is append-only: % refused', tg_op
        using errcode = 'insufficient_privilege';
end
$$;
create trigger ledger_append_only before update or delete on exchange.ledger_entry
    for each row execute function exchange.ledger_is_append_only();
