-- Outbox consumers and notifications: a reader that never skips an event, an inbox per member, mail deliveries.

-- The writing transaction of each event, so a reader can stay below the oldest transaction still in flight.
-- Sequence ids are taken at insert and commit in any order; transaction ids below the snapshot's xmin are all
-- finished, so every event committed later sorts after what a reader has seen. pg_current_xact_id() is the
-- top-level transaction's id, also inside a savepoint. Rows written before this migration get this
-- migration's id; consumers start at the beginning and read them in event_id order.
alter table outbox.event add column xact_id xid8 not null default pg_current_xact_id();
create index event_xact_idx on outbox.event (xact_id, event_id);

-- One durable cursor per consumer: the last (xact_id, event_id) it handled, moved in the transaction that
-- holds the consumer's own writes for those events.
create table outbox.consumer (
    name          text primary key check (name ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    last_xact_id  xid8 not null default '0',
    last_event_id bigint not null default 0 check (last_event_id >= 0),
    handled       bigint not null default 0 check (handled >= 0),
    updated_at    timestamptz not null default now(),
    -- The handler's last failure on the event after the cursor; cleared when that batch commits.
    last_error    text,
    failed_at     timestamptz,
    check ((last_error is null) = (failed_at is null))
);

create schema if not exists notification;

-- The in-app inbox: one row per event and recipient, so a replayed event adds nothing.
create table notification.notification (
    notification_id bigint generated always as identity primary key,
    -- Null only for rows carried over from contact.notification that no event announced.
    event_id        bigint references outbox.event,
    recipient_id    uuid not null references contact.user,
    -- contact_request is carried over from contact.notification; no rule writes it today.
    kind            text not null check (kind in (
                        'request_created', 'request_accepted', 'request_declined', 'request_cancelled',
                        'exchange_completed', 'exchange_suspected', 'return_started', 'return_cancelled',
                        'suspected_exchange_dismissed', 'contact_request')),
    -- What the message names (book title, the other person), as it was when the event was handled.
    payload         jsonb not null default '{}' check (jsonb_typeof(payload) = 'object'),
    created_at      timestamptz not null default now(),
    read_at         timestamptz,
    unique (event_id, recipient_id)
);
create index notification_recipient_idx on notification.notification (recipient_id, notification_id desc);
create index notification_unread_idx on notification.notification (recipient_id, notification_id desc)
    where read_at is null;

-- One mail per notification, ever: retried with backoff while pending, final once sent or failed.
create table notification.email_delivery (
    notification_id bigint primary key references notification.notification,
    to_address      text not null check (to_address ~ '^[^@\s]+@[^@\s]+$'),
    status          text not null default 'pending' check (status in ('pending', 'sent', 'failed')),
    attempts        integer not null default 0 check (attempts >= 0),
    next_attempt_at timestamptz default now(),
    last_error      text check (last_error is null or length(last_error) <= 2000),
    created_at      timestamptz not null default now(),
    sent_at         timestamptz,
    check ((status = 'sent') = (sent_at is not null)),
    check ((status = 'pending') = (next_attempt_at is not null)),
    check (status <> 'failed' or last_error is not null)
);
create index email_delivery_due_idx on notification.email_delivery (next_attempt_at) where status = 'pending';

-- contact.notification (written only by ingest, for suspected exchanges) moves here. A row whose
-- ExchangeSuspected event is in the outbox is linked to it, so the consumer's first pass adds no second copy.
insert into notification.notification (event_id, recipient_id, kind, payload, created_at, read_at)
select e.event_id, n.user_id, n.kind, n.payload, n.created_at, n.read_at
from contact.notification n
left join lateral (
    select ev.event_id from outbox.event ev
    where n.kind = 'exchange_suspected' and ev.type = 'ExchangeSuspected'
      and ev.payload ->> 'image_id' = n.payload ->> 'image_id'
      and ev.payload ->> 'holder_id' = n.user_id::text
    order by ev.event_id limit 1
) e on true
order by n.notification_id;
drop table contact.notification;
