-- Alerts for the operator: one row per failed Dagster run (the run-failure sensor), mailed when SMTP is set.
create table notification.operator_alert (
    alert_id    bigint generated always as identity primary key,
    kind        text not null check (kind in ('run_failed')),
    run_id      text not null,
    job_name    text not null,
    message     text not null check (length(message) between 1 and 4000),
    created_at  timestamptz not null default now(),
    mailed_to   text,
    mailed_at   timestamptz,
    mail_error  text,
    unique (kind, run_id)
);
