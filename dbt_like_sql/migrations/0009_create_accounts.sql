-- Accounts: passwords (argon2), sessions whose refresh tokens can be revoked, login throttling,
-- one-time claim codes for members ingest created, and per-user idempotency keys for the API.
alter table contact.user add column password_hash text check (password_hash is null or password_hash like '$argon2%');
alter table contact.user add column claimed_at timestamptz;
alter table contact.user add check ((password_hash is null) = (claimed_at is null));

-- One row per login. The refresh token is stored only as its sha256; refreshing rotates it, and a
-- revoked session refuses both its refresh token and the access tokens issued for it.
create table contact.session (
    session_id   uuid primary key default gen_random_uuid(),
    user_id      uuid not null references contact.user,
    refresh_hash bytea not null unique check (length(refresh_hash) = 32),
    created_at   timestamptz not null default now(),
    refreshed_at timestamptz,
    expires_at   timestamptz not null,
    revoked_at   timestamptz,
    revoked_why  text check (revoked_why in ('logout', 'refresh_reuse', 'password_set')),
    check ((revoked_at is null) = (revoked_why is null))
);
create index session_user_idx on contact.session (user_id) where revoked_at is null;

-- Every login attempt, kept for throttling by handle and by client address.
create table contact.login_attempt (
    attempt_id   bigint generated always as identity primary key,
    handle       text not null,
    address      text not null,
    is_success   boolean not null,
    attempted_at timestamptz not null default now()
);
create index login_attempt_handle_idx on contact.login_attempt (handle, attempted_at) where not is_success;
create index login_attempt_address_idx on contact.login_attempt (address, attempted_at) where not is_success;

-- A member created by ingest (`covr ingest --as`) has no password; an operator issues a one-time code
-- (`covr users claim-code HANDLE`) that the member exchanges for a password. Stored as sha256 only.
create table contact.claim_code (
    user_id    uuid primary key references contact.user,
    code_hash  bytea not null check (length(code_hash) = 32),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    used_at    timestamptz
);

create schema if not exists platform;

-- The first response to a POST, replayed for the same key; a key is the caller's, and expires.
create table platform.idempotency_key (
    user_id      uuid not null references contact.user,
    key          text not null check (length(key) between 1 and 255),
    request_hash bytea not null check (length(request_hash) = 32),
    status_code  smallint check (status_code between 200 and 599),
    response     jsonb,
    created_at   timestamptz not null default now(),
    expires_at   timestamptz not null,
    primary key (user_id, key),
    check ((status_code is null) = (response is null))
);
create index idempotency_key_expiry_idx on platform.idempotency_key (expires_at);
