-- One schema per bounded context, plus the extensions the embedded server ships (plpgsql, vector).
create extension if not exists vector;

create schema if not exists contact;
create schema if not exists catalog;
create schema if not exists media;
create schema if not exists ingest;
create schema if not exists exchange;
create schema if not exists outbox;

-- ISBN-13 checksum: digits weighted 1,3,1,3,... sum to a multiple of 10.
create function catalog.is_valid_isbn13(isbn text) returns boolean
language sql immutable strict parallel safe
as $$
    select isbn ~ '^97[89][0-9]{10}$'
       and (
           select sum(substr(isbn, i, 1)::int * case when i % 2 = 0 then 3 else 1 end) % 10 = 0
           from generate_series(1, 13) as i
       )
$$;
