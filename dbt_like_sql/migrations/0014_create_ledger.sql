-- The provenance ledger: one hash chain per copy, its head, and signed checkpoints over every head.
-- covr_core/ledger is the only writer of this schema; covr_core/ledger/chain.py is the only append path.
create schema if not exists ledger;

-- The seed's exchange.ledger_entry was never written by any code (nullable genesis prev, no framing);
-- ledger.entry replaces it. Forward-only: dropped here, 0006 stays as it was applied.
drop trigger if exists ledger_append_only on exchange.ledger_entry;
drop table if exists exchange.ledger_entry;
drop function if exists exchange.ledger_is_append_only();

-- One row per copy that has a history: the lock every append takes, and the head it moves.
-- head_seq 0 with the genesis constant (32 zero bytes) is a chain with no entry yet.
create table ledger.chain (
    copy_id    uuid primary key references catalog.copy,
    head_seq   bigint not null default 0 check (head_seq >= 0),
    head_hash  bytea not null default '\x0000000000000000000000000000000000000000000000000000000000000000'
               check (length(head_hash) = 32),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create table ledger.entry (
    copy_id      uuid not null references ledger.chain,
    seq          bigint not null check (seq >= 1),
    prev_hash    bytea not null check (length(prev_hash) = 32),
    entry_hash   bytea not null check (length(entry_hash) = 32),
    -- The stored value whose integer UTC epoch-microseconds were hashed.
    ts           timestamptz not null,
    entry_type   text not null check (entry_type in (
                     'copy_created', 'request_created', 'request_accepted', 'request_declined',
                     'request_cancelled', 'handover_completed', 'exchange_confirmed', 'copy_withdrawn',
                     'copy_lost')),
    from_user_id uuid references contact.user,
    to_user_id   uuid references contact.user,
    refs         jsonb not null default '{}' check (jsonb_typeof(refs) = 'object'),
    payload      jsonb not null default '{}' check (jsonb_typeof(payload) = 'object'),
    -- The exact bytes that were hashed: RFC 8785 JSON of the framed entry (the JSONB beside it re-serialises).
    canonical    bytea not null check (length(canonical) between 2 and 65536),
    primary key (copy_id, seq),
    -- Two entries with one parent are a fork, whatever the application believed.
    unique (copy_id, prev_hash),
    check ((seq = 1) = (prev_hash = '\x0000000000000000000000000000000000000000000000000000000000000000'))
);

-- A head only moves forward, one entry at a time, onto an entry that exists with that hash.
create function ledger.chain_moves_forward() returns trigger
language plpgsql as $$
begin
    if new.copy_id <> old.copy_id then
        raise exception 'ledger.chain of copy %: copy_id cannot change', old.copy_id
            using errcode = 'insufficient_privilege';
    end if;
    if new.head_seq <> old.head_seq + 1 or not exists (
        select 1 from ledger.entry e
        where e.copy_id = new.copy_id and e.seq = new.head_seq and e.entry_hash = new.head_hash
    ) then
        raise exception 'ledger.chain of copy %: head may only move from % to the next entry', old.copy_id, old.head_seq
            using errcode = 'insufficient_privilege';
    end if;
    return new;
end
$$;
create trigger chain_moves_forward before update on ledger.chain
    for each row execute function ledger.chain_moves_forward();

-- Signed checkpoints: a Merkle root (RFC 9162) over every chain's (copy_id, head_seq, head_hash).
create table ledger.checkpoint (
    checkpoint_id        bigint primary key check (checkpoint_id >= 1),
    tree_size            bigint not null check (tree_size >= 0),
    root_hash            bytea not null check (length(root_hash) = 32),
    -- sha256 of the previous checkpoint's body (genesis constant for the first): deleting one is visible.
    prev_checkpoint_hash bytea not null check (length(prev_checkpoint_hash) = 32),
    issued_at            timestamptz not null,
    key_id               text not null check (key_id ~ '^[0-9a-f]{16}$'),
    -- The exact canonical bytes that were signed, and the Ed25519 signature over them.
    body                 bytea not null,
    signature            bytea not null check (length(signature) = 64),
    object_key           text not null
);

-- The leaves of each checkpoint, stored as a delta: only the chains whose head moved since the previous
-- one. A checkpoint's leaf for a copy is its row with the greatest checkpoint_id at or below it.
create table ledger.checkpoint_head (
    copy_id       uuid not null references ledger.chain,
    checkpoint_id bigint not null references ledger.checkpoint,
    head_seq      bigint not null check (head_seq >= 1),
    head_hash     bytea not null check (length(head_hash) = 32)
);
-- Newest first per copy: "the leaf of checkpoint K" is the first row at or below K.
create unique index checkpoint_head_copy_idx on ledger.checkpoint_head (copy_id, checkpoint_id desc);
create index checkpoint_head_checkpoint_idx on ledger.checkpoint_head (checkpoint_id);

-- Append-only: the database refuses edits and removals, whatever the application does. Someone with
-- the table owner's rights can still disable these triggers; verification and checkpoints catch that.
create function ledger.refuse_change() returns trigger
language plpgsql as $$
begin
    raise exception '%.% is append-only: % refused', tg_table_schema, tg_table_name, tg_op
        using errcode = 'insufficient_privilege';
end
$$;
create trigger entry_append_only before update or delete on ledger.entry
    for each row execute function ledger.refuse_change();
create trigger entry_no_truncate before truncate on ledger.entry
    for each statement execute function ledger.refuse_change();
create trigger chain_no_delete before delete on ledger.chain
    for each row execute function ledger.refuse_change();
create trigger chain_no_truncate before truncate on ledger.chain
    for each statement execute function ledger.refuse_change();
create trigger checkpoint_append_only before update or delete on ledger.checkpoint
    for each row execute function ledger.refuse_change();
create trigger checkpoint_no_truncate before truncate on ledger.checkpoint
    for each statement execute function ledger.refuse_change();
create trigger checkpoint_head_append_only before update or delete on ledger.checkpoint_head
    for each row execute function ledger.refuse_change();
create trigger checkpoint_head_no_truncate before truncate on ledger.checkpoint_head
    for each statement execute function ledger.refuse_change();
