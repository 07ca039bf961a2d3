-- Requests and hand-overs as a state machine the database enforces, whatever the application does.
--
--   request:            pending ──► accepted ──► completed        (a request is born pending)
--                          │  │         └──────► cancelled
--                          │  └──► declined
--                          └─────► cancelled
--   exchange (hand-over): in_progress ──► completed | cancelled   (born in progress)
--   suspected_exchange:   pending ──► confirmed | dismissed
--
-- A refused transition raises check_violation naming the row, the old and the new status.

-- Kinds: borrow (the copy comes back to its owner) or keep (ownership moves).
alter table exchange.request drop constraint request_kind_check;
update exchange.request set kind = 'keep' where kind = 'exchange';
alter table exchange.request add constraint request_kind_check check (kind in ('borrow', 'keep'));

-- Accepting is a decision about the copy: one accepted request per copy at a time.
create unique index request_one_accepted_per_copy_idx on exchange.request (copy_id) where status = 'accepted';

-- Condition is rated 0 (unusable) to 10 (as new).
alter table catalog.copy drop constraint copy_condition_grade_check;
alter table catalog.copy add constraint copy_condition_grade_check check (condition_grade between 0 and 10);
alter table exchange.degradation_rating drop constraint degradation_rating_rating_check;
alter table exchange.degradation_rating add constraint degradation_rating_rating_check check (rating between 0 and 10);

-- A hand-over comes from an accepted request, from a confirmed suspected exchange, or is a borrowed copy's
-- return to its owner (no request: the owner is owed it).
alter table exchange.exchange
    add column kind         text,
    add column origin       text,
    add column cancelled_at timestamptz,
    add column cancelled_by uuid references contact.user,
    alter column request_id drop not null;
update exchange.exchange e set kind = r.kind, origin = 'request'
from exchange.request r where r.request_id = e.request_id;
alter table exchange.exchange
    alter column kind set not null,
    alter column origin set not null,
    add constraint exchange_kind_check check (kind in ('borrow', 'keep', 'return')),
    add constraint exchange_origin_check check (origin in ('request', 'suspected', 'return')),
    add constraint exchange_origin_request_check check ((origin = 'request') = (request_id is not null)),
    add constraint exchange_origin_return_check check ((origin = 'return') = (kind = 'return')),
    add constraint exchange_cancelled_check check ((status = 'cancelled') = (cancelled_at is not null)),
    add constraint exchange_cancelled_by_check check (cancelled_by is null or status = 'cancelled');
create unique index exchange_one_in_progress_per_copy_idx on exchange.exchange (copy_id) where status = 'in_progress';
create index exchange_from_user_idx on exchange.exchange (from_user_id, created_at desc);
create index exchange_to_user_idx on exchange.exchange (to_user_id, created_at desc);

-- A confirmed suspicion names the hand-over it became; a dismissed one who dismissed it.
alter table exchange.suspected_exchange
    add column exchange_id uuid unique references exchange.exchange,
    add column decided_by  uuid references contact.user,
    add column decided_at  timestamptz,
    add constraint suspected_exchange_decided_check check ((status = 'pending') = (decided_at is null)),
    add constraint suspected_exchange_confirmed_check check ((status = 'confirmed') = (exchange_id is not null));
create index suspected_exchange_holder_idx on exchange.suspected_exchange (holder_id, created_at desc);
create index suspected_exchange_uploader_idx on exchange.suspected_exchange (uploader_id, created_at desc);
create index request_requester_idx on exchange.request (requester_id, created_at desc);
create index request_holder_idx on exchange.request (holder_id, created_at desc);

-- One generic guard. Arguments: the status a row is born with, the space-separated columns that never change,
-- then every allowed 'from>to' step. Anything else (a skipped step, leaving a final state) is refused.
create function exchange.enforce_transition() returns trigger
language plpgsql as $$
declare
    col text;
    step text;
begin
    if tg_op = 'INSERT' then
        if new.status is distinct from tg_argv[0] then
            raise exception '%.% rows start as %, not %', tg_table_schema, tg_table_name, tg_argv[0], new.status
                using errcode = 'check_violation';
        end if;
        return new;
    end if;
    foreach col in array string_to_array(tg_argv[1], ' ') loop
        if to_jsonb(new) -> col is distinct from to_jsonb(old) -> col then
            raise exception '%.%.% never changes (% -> %)', tg_table_schema, tg_table_name, col,
                to_jsonb(old) ->> col, to_jsonb(new) ->> col
                using errcode = 'check_violation';
        end if;
    end loop;
    if new.status is distinct from old.status then
        step := old.status || '>' || new.status;
        if not step = any(tg_argv[2:]) then
            raise exception '%.% % -> % is not an allowed transition (allowed: %)', tg_table_schema, tg_table_name,
                old.status, new.status, array_to_string(tg_argv[2:], ', ')
                using errcode = 'check_violation';
        end if;
    end if;
    return new;
end
$$;

create trigger request_transition before insert or update on exchange.request
    for each row execute function exchange.enforce_transition(
        'pending', 'request_id copy_id requester_id holder_id kind created_at',
        'pending>accepted', 'pending>declined', 'pending>cancelled', 'accepted>completed', 'accepted>cancelled');

create trigger exchange_transition before insert or update on exchange.exchange
    for each row execute function exchange.enforce_transition(
        'in_progress', 'exchange_id request_id copy_id from_user_id to_user_id kind origin created_at',
        'in_progress>completed', 'in_progress>cancelled');

create trigger suspected_exchange_transition before insert or update on exchange.suspected_exchange
    for each row execute function exchange.enforce_transition(
        'pending', 'suspected_exchange_id image_id copy_id uploader_id holder_id created_at',
        'pending>confirmed', 'pending>dismissed');

-- The steps that involve two tables (these triggers are named to fire after the plain transition check: Postgres
-- runs a table's triggers in name order): a hand-over starts only from what it claims to come from, a request is
-- completed only by its completed hand-over, and a completed hand-over has moved the copy.
create function exchange.handover_follows_its_origin() returns trigger
language plpgsql as $$
declare
    req exchange.request;
    cp  catalog.copy;
begin
    if tg_op = 'INSERT' then
        if new.origin = 'request' then
            select * into req from exchange.request where request_id = new.request_id;
            if req.status is distinct from 'accepted' or req.copy_id <> new.copy_id
               or req.holder_id <> new.from_user_id or req.requester_id <> new.to_user_id or req.kind <> new.kind then
                raise exception 'hand-over of copy % from request %: the request must be accepted and match it '
                                '(request is %)', new.copy_id, new.request_id, coalesce(req.status, 'missing')
                    using errcode = 'check_violation';
            end if;
        elsif new.origin = 'return' then
            select * into cp from catalog.copy where copy_id = new.copy_id;
            if cp.current_holder_id <> new.from_user_id or cp.owner_id <> new.to_user_id then
                raise exception 'return of copy %: it goes from its holder to its owner', new.copy_id
                    using errcode = 'check_violation';
            end if;
        elsif not exists (select 1 from exchange.suspected_exchange s
                          where s.copy_id = new.copy_id and s.status = 'pending'
                            and s.holder_id = new.from_user_id and s.uploader_id = new.to_user_id) then
            raise exception 'hand-over of copy % from a suspected exchange: none is pending from % to %',
                new.copy_id, new.from_user_id, new.to_user_id
                using errcode = 'check_violation';
        end if;
    elsif new.status = 'completed' and old.status <> 'completed' then
        if not exists (select 1 from catalog.copy c
                       where c.copy_id = new.copy_id and c.current_holder_id = new.to_user_id) then
            raise exception 'hand-over % completed before copy % moved to %', new.exchange_id, new.copy_id,
                new.to_user_id
                using errcode = 'check_violation';
        end if;
    end if;
    return new;
end
$$;
create trigger exchange_transition_follows_origin before insert or update of status on exchange.exchange
    for each row execute function exchange.handover_follows_its_origin();

create function exchange.request_follows_its_handover() returns trigger
language plpgsql as $$
begin
    if new.status = 'completed' and old.status <> 'completed'
       and not exists (select 1 from exchange.exchange e
                       where e.request_id = new.request_id and e.status = 'completed') then
        raise exception 'request % completed without its hand-over being completed', new.request_id
            using errcode = 'check_violation';
    end if;
    if new.status = 'cancelled' and old.status = 'accepted'
       and exists (select 1 from exchange.exchange e
                   where e.request_id = new.request_id and e.status = 'in_progress') then
        raise exception 'request % cancelled while its hand-over is still in progress', new.request_id
            using errcode = 'check_violation';
    end if;
    return new;
end
$$;
create trigger request_transition_follows_handover before update of status on exchange.request
    for each row execute function exchange.request_follows_its_handover();

create function exchange.suspicion_follows_its_handover() returns trigger
language plpgsql as $$
begin
    if new.status = 'confirmed' and old.status <> 'confirmed'
       and not exists (select 1 from exchange.exchange e
                       where e.exchange_id = new.exchange_id and e.status = 'completed'
                         and e.copy_id = new.copy_id and e.to_user_id = new.uploader_id) then
        raise exception 'suspected exchange % confirmed without a completed hand-over of copy % to %',
            new.suspected_exchange_id, new.copy_id, new.uploader_id
            using errcode = 'check_violation';
    end if;
    return new;
end
$$;
create trigger suspected_exchange_transition_follows_handover before update of status on exchange.suspected_exchange
    for each row execute function exchange.suspicion_follows_its_handover();

-- Every request and hand-over transition announces itself.
alter table outbox.event drop constraint event_type_check;
alter table outbox.event add constraint event_type_check check (type in (
    'ImageUploaded', 'BookIdentified', 'DedupResolved', 'RequestCreated', 'ExchangeAccepted', 'ExchangeCompleted',
    'ExchangeSuspected', 'RequestDeclined', 'RequestCancelled', 'ReturnStarted', 'ReturnCancelled',
    'SuspectedExchangeDismissed'));
