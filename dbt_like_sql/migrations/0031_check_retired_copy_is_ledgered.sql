-- A copy withdrawn or lost says so in its ledger, in the same transaction: catalog writes the status, the ledger
-- the entry, and exchange.circulation does both. A caller that changes the status alone (catalog's functions
-- called directly, or plain SQL) is refused at commit, so no copy leaves circulation with a history that
-- does not tell it. Checked at commit (deferred), so either write may come first.
create function ledger.retirement_is_recorded() returns trigger
language plpgsql as $$
declare
    now_status text;
    wanted     text;
begin
    select status into now_status from catalog.copy where copy_id = new.copy_id;
    wanted := case now_status when 'withdrawn' then 'copy_withdrawn' when 'lost' then 'copy_lost' end;
    if wanted is not null and not exists (
        select 1 from ledger.entry e where e.copy_id = new.copy_id and e.entry_type = wanted
    ) then
        raise exception 'catalog.copy %: % without a % entry in its ledger (exchange.circulation writes both)',
            new.copy_id, now_status, wanted
            using errcode = 'check_violation';
    end if;
    return null;
end
$$;
create constraint trigger copy_retirement_is_ledgered after update of status on catalog.copy
    deferrable initially deferred
    for each row when (new.status in ('withdrawn', 'lost') and new.status is distinct from old.status)
    execute function ledger.retirement_is_recorded();
