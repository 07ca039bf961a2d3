-- grain: one row per copy; the search document of the copies index (Meilisearch or Postgres full-text).
with copies as (
    select * from catalog.copy
),

books as (
    select * from catalog.book
),

holders as (
    select user_id, display_name from contact.user
),

image_counts as (
    select copy_id, count(*) as image_count
    from media.image
    where status = 'accepted' and copy_id is not null
    group by copy_id
),

final as (
    select
        copies.copy_id,
        copies.book_id,
        books.title,
        books.authors,
        books.isbn13,
        books.published_year,
        books.language,
        books.tags,
        copies.status,
        copies.current_holder_id,
        holders.display_name as current_holder_name,
        copies.condition_grade,
        copies.notes,
        coalesce(image_counts.image_count, 0) > 0 as has_images,
        copies.created_at,
        greatest(copies.updated_at, books.updated_at) as updated_at
    from copies
    inner join books on books.book_id = copies.book_id
    inner join holders on holders.user_id = copies.current_holder_id
    left join image_counts on image_counts.copy_id = copies.copy_id
)

select * from final
