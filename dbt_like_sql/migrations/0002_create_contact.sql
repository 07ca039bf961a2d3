-- Accounts and the contact graph: Covr is a network of people who know each other.
create table contact.user (
    user_id      uuid primary key default gen_random_uuid(),
    handle       text not null unique check (handle ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    display_name text not null check (length(display_name) between 1 and 200),
    email        text unique check (email is null or email ~ '^[^@\s]+@[^@\s]+$'),
    created_at   timestamptz not null default now()
);

create table contact.link (
    user_id    uuid not null references contact.user,
    contact_id uuid not null references contact.user,
    status     text not null default 'pending' check (status in ('pending', 'accepted', 'blocked')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (user_id, contact_id),
    check (user_id <> contact_id)
);
create index link_contact_idx on contact.link (contact_id);

create table contact.notification (
    notification_id bigint generated always as identity primary key,
    user_id         uuid not null references contact.user,
    kind            text not null check (kind in (
                        'request_created', 'request_accepted', 'request_declined',
                        'exchange_completed', 'exchange_suspected', 'contact_request')),
    payload         jsonb not null default '{}',
    created_at      timestamptz not null default now(),
    read_at         timestamptz
);
create index notification_user_idx on contact.notification (user_id, created_at desc);
