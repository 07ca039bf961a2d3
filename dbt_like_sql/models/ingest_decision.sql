-- grain: one row per uploaded image; what ingest decided about it and why, for operators.
with images as (
    select * from media.image
),

identifications as (
    select * from ingest.identification
),

decisions as (
    select * from ingest.dedup_result
),

open_failures as (
    select * from ingest.failure where resolved_at is null
),

final as (
    select
        images.image_id,
        images.object_key,
        images.uploader_id,
        case when open_failures.object_key is not null then 'failed' else images.status end as status,
        images.rejection_reason,
        open_failures.stage as failure_stage,
        open_failures.reason as failure_reason,
        images.sha256,
        images.phash,
        identifications.isbn13,
        identifications.source as identification_source,
        identifications.confidence,
        decisions.decision,
        decisions.match_reason,
        coalesce(decisions.book_id, identifications.book_id) as book_id,
        decisions.copy_id,
        images.created_at
    from images
    left join identifications on identifications.image_id = images.image_id
    left join decisions on decisions.image_id = images.image_id
    left join open_failures on open_failures.object_key = images.object_key
)

select * from final
