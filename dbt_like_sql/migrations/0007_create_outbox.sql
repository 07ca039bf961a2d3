-- Transactional outbox: events are written in the same transaction as the state change they announce.
create table outbox.event (
    event_id        bigserial primary key,
    type            text not null check (type in ('ImageUploaded', 'BookIdentified', 'DedupResolved',
                                                  'RequestCreated', 'ExchangeAccepted', 'ExchangeCompleted')),
    -- The same fact announced twice (a re-run) is one event.
    idempotency_key text not null unique,
    payload         jsonb not null,
    created_at      timestamptz not null default now(),
    published_at    timestamptz
);
create index event_unpublished_idx on outbox.event (event_id) where published_at is null;
