-- Images that could not be processed now (the object store, Open Library, a stage's error): retried with backoff.
-- A rejected image (the file is bad; final) lives in media.image; a failure is ingest's own, retryable state.
create table ingest.failure (
    object_key      text primary key,
    image_id        uuid references media.image,
    uploader_id     uuid references contact.user,
    stage           text not null check (stage in ('upload', 'identification', 'dedup')),
    reason          text not null check (length(reason) between 1 and 2000),
    attempts        integer not null default 1 check (attempts >= 1),
    run_id          text,
    first_failed_at timestamptz not null default now(),
    last_failed_at  timestamptz not null default now(),
    -- null: no automatic retry left; `covr ingest --retry` still works.
    next_attempt_at timestamptz,
    resolved_at     timestamptz,
    check (resolved_at is null or resolved_at >= first_failed_at)
);
create index failure_due_idx on ingest.failure (next_attempt_at) where resolved_at is null;

-- An object overwritten under a key already ingested. The first version stays: it is the evidence that
-- decisions and the provenance ledger point at, so a new version is refused and recorded here.
create table ingest.overwrite_refusal (
    object_key  text not null references media.image (object_key),
    etag        text not null,
    reason      text not null,
    detected_at timestamptz not null default now(),
    primary key (object_key, etag)
);

-- A re-executed run shares its batch with the run it re-executes (the root run id).
create unique index batch_run_idx on ingest.batch (run_id);

-- A suspected exchange is announced like every state change others depend on; notifications follow the event.
alter table outbox.event drop constraint event_type_check;
alter table outbox.event add constraint event_type_check check (type in (
    'ImageUploaded', 'BookIdentified', 'DedupResolved', 'RequestCreated', 'ExchangeAccepted', 'ExchangeCompleted',
    'ExchangeSuspected'));
