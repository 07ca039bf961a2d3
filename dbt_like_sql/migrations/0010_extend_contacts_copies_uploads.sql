-- Contacts with blocks, copies members can annotate and take out of circulation, and uploads made through the API.

-- contact.link holds two kinds of row.
--   * An invitation or a contact, once per pair whichever way round: user_id invited contact_id; 'pending' until
--     contact_id accepts, then 'accepted'. Declining, cancelling and removing delete the row.
--   * A block, 'blocked', pointing from the blocker (user_id) to the blocked member (contact_id). It replaces
--     whatever the pair had, so two members can block each other and each lifts only their own block.
alter table contact.link add column accepted_at timestamptz;
update contact.link set accepted_at = updated_at where status = 'accepted';
alter table contact.link add constraint link_accepted_at_check check ((status = 'accepted') = (accepted_at is not null));

-- Before this migration nothing wrote links; keep one row per pair should any pair have two.
delete from contact.link l
using contact.link o
where l.user_id = o.contact_id and l.contact_id = o.user_id
  and l.status <> 'blocked' and o.status <> 'blocked'
  and ((o.status = 'accepted' and l.status = 'pending')
       or (o.status = l.status and (l.created_at, l.user_id) > (o.created_at, o.user_id)));
delete from contact.link l
using contact.link b
where b.status = 'blocked' and l.status <> 'blocked'
  and least(l.user_id, l.contact_id) = least(b.user_id, b.contact_id)
  and greatest(l.user_id, l.contact_id) = greatest(b.user_id, b.contact_id);

create unique index link_one_per_pair_idx on contact.link (least(user_id, contact_id), greatest(user_id, contact_id))
    where status <> 'blocked';

-- The link state machine, whatever the application does: a row's status moves only pending -> accepted; blocking
-- replaces the pair's row, and a block is lifted by deleting it. No invitation or contact while either member blocks
-- the other. accepted_at is stamped on acceptance (or on an accepted row inserted directly, as test set-up does).
create function contact.link_transition_is_allowed() returns trigger
language plpgsql as $$
begin
    if tg_op = 'UPDATE' then
        if new.user_id <> old.user_id or new.contact_id <> old.contact_id then
            raise exception 'contact.link %->%: the members of a link never change', old.user_id, old.contact_id
                using errcode = 'check_violation';
        end if;
        if new.status <> old.status and not (old.status = 'pending' and new.status = 'accepted') then
            raise exception 'contact.link %->%: % -> % is not a transition (pending -> accepted only)',
                old.user_id, old.contact_id, old.status, new.status
                using errcode = 'check_violation';
        end if;
    end if;
    if new.status = 'accepted' and new.accepted_at is null then
        new.accepted_at := now();
    end if;
    if new.status <> 'blocked' and exists (
        select 1 from contact.link b
        where b.status = 'blocked'
          and ((b.user_id = new.user_id and b.contact_id = new.contact_id)
               or (b.user_id = new.contact_id and b.contact_id = new.user_id))
    ) then
        raise exception 'contact.link %->%: a block stands between these members', new.user_id, new.contact_id
            using errcode = 'check_violation';
    end if;
    if new.status = 'blocked' and exists (
        select 1 from contact.link o
        where o.status <> 'blocked'
          and ((o.user_id = new.user_id and o.contact_id = new.contact_id)
               or (o.user_id = new.contact_id and o.contact_id = new.user_id))
    ) then
        raise exception 'contact.link %->%: delete the pair''s invitation or contact before blocking',
            new.user_id, new.contact_id
            using errcode = 'check_violation';
    end if;
    return new;
end
$$;
create trigger link_transition before insert or update on contact.link
    for each row execute function contact.link_transition_is_allowed();

-- Searching members to invite by the start of a handle or display name.
create index user_handle_prefix_idx on contact.user (handle text_pattern_ops);
create index user_display_name_prefix_idx on contact.user (lower(display_name) text_pattern_ops);

-- Copies: 'unavailable' is the owner's "not lending it now" (a copy only ever becomes requested from 'available');
-- tags and notes of the member's own; withdrawn and lost are final (a withdrawn copy may still be found lost).
alter table catalog.copy drop constraint copy_status_check;
alter table catalog.copy add constraint copy_status_check
    check (status in ('available', 'unavailable', 'requested', 'on_loan', 'withdrawn', 'lost'));

create function catalog.are_valid_copy_tags(tags text[]) returns boolean
language sql immutable as $$
    select cardinality(tags) <= 50
       and coalesce((select bool_and(length(t) between 1 and 64 and t = btrim(t)) from unnest(tags) as u(t)), true)
$$;
alter table catalog.copy add column tags text[] not null default '{}'
    constraint copy_tags_check check (catalog.are_valid_copy_tags(tags));
alter table catalog.copy add constraint copy_notes_check check (notes is null or length(notes) <= 2000);
create index copy_owner_idx on catalog.copy (owner_id);

create function catalog.copy_status_is_allowed() returns trigger
language plpgsql as $$
begin
    if new.status <> old.status and old.status = 'lost' then
        raise exception 'catalog.copy %: a lost copy stays lost (% refused)', old.copy_id, new.status
            using errcode = 'check_violation';
    end if;
    if new.status <> old.status and old.status = 'withdrawn' and new.status <> 'lost' then
        raise exception 'catalog.copy %: a withdrawn copy can only be marked lost (% refused)', old.copy_id, new.status
            using errcode = 'check_violation';
    end if;
    return new;
end
$$;
create trigger copy_status_transition before update of status on catalog.copy
    for each row execute function catalog.copy_status_is_allowed();

-- An upload made through the API: its id names the object key, under the uploader's prefix where the ingest
-- sensor looks. 'direct' went through the API into the local store; 'presigned' got an S3 PUT URL.
create table media.upload (
    upload_id      uuid primary key,
    uploader_id    uuid not null references contact.user,
    object_key     text not null unique,
    method         text not null check (method in ('direct', 'presigned')),
    content_type   text not null check (content_type ~ '^[a-z]+/[a-z0-9.+-]+$'),
    byte_size      bigint check (byte_size >= 0),
    sha256         text check (sha256 ~ '^[0-9a-f]{64}$'),
    url_expires_at timestamptz,
    created_at     timestamptz not null default now(),
    check (object_key like 'uploads/' || uploader_id::text || '/' || upload_id::text || '.%'),
    check ((method = 'direct') = (byte_size is not null and sha256 is not null)),
    check ((method = 'presigned') = (url_expires_at is not null))
);
create index upload_uploader_idx on media.upload (uploader_id, created_at desc);
