-- grain: one row per copy not withdrawn; the search document of the copies index (Meilisearch or Postgres full-text).
-- Each import CTE is used once, so Postgres inlines them and a `where copy_id = ...` on this view reads one copy
-- (the search sync rebuilds documents a few at a time); per-copy lists are lateral subqueries for the same reason.
with copies as (
    select * from catalog.copy where status <> 'withdrawn'
),

books as (
    select * from catalog.book
),

holders as (
    select user_id, display_name from contact.user
),

final as (
    select
        copies.copy_id,
        copies.book_id,
        books.title,
        books.authors,
        books.isbn13,
        books.published_year,
        tagged.tags,
        books.language,
        copies.status,
        copies.current_holder_id,
        holders.display_name as current_holder_name,
        copies.owner_id,
        copies.condition_grade,
        exists (
            select from media.image i where i.copy_id = copies.copy_id and i.status = 'accepted'
        ) as has_images,
        copies.notes,
        copies.created_at,
        greatest(copies.updated_at, books.updated_at) as updated_at,
        words.search_terms
    from copies
    inner join books on books.book_id = copies.book_id
    inner join holders on holders.user_id = copies.current_holder_id
    -- The book's tags, then the member's own tags on the copy, each once (case-insensitively), first seen first.
    cross join lateral (
        select coalesce(array_agg(t.tag order by t.first_seen), '{}') as tags
        from (
            select min(u.tag) as tag, min(u.n) as first_seen
            from unnest(books.tags || copies.tags) with ordinality as u (tag, n)
            group by lower(u.tag)
        ) as t
    ) as tagged
    -- Normalised title and author words, accents folded, each once, first seen first.
    cross join lateral (
        select coalesce(array_agg(w.word order by w.first_seen), '{}') as search_terms
        from (
            select s.word, min(s.n) as first_seen
            from regexp_split_to_table(
                search.fold_text(books.title || ' ' || array_to_string(books.authors, ' ')), ' '
            ) with ordinality as s (word, n)
            where s.word <> ''
            group by s.word
        ) as w
    ) as words
)

select * from final
