"""Alerts for the operator: a failed run is recorded once, and mailed to the operator address when SMTP is set."""

from __future__ import annotations

from email.message import EmailMessage

import psycopg


def record_run_failure(conn: psycopg.Connection, *, run_id: str, job_name: str, message: str) -> int | None:
    """The alert's id, or None when this run's failure was already recorded (a sensor tick seen twice)."""
    row = conn.execute(
        "insert into notification.operator_alert (kind, run_id, job_name, message) values ('run_failed', %s, %s, %s) "
        "on conflict (kind, run_id) do nothing returning alert_id",
        (run_id, job_name, message[:4000] or "run failed"),
    ).fetchone()
    return None if row is None else (row["alert_id"] if isinstance(row, dict) else row[0])


def compose_alert(*, to: str, from_address: str, run_id: str, job_name: str, message: str,
                  ui_url: str | None) -> EmailMessage:
    mail = EmailMessage()
    mail["To"], mail["From"] = to, from_address
    mail["Subject"] = f"Covr: run {run_id[:8]} of {job_name} failed"
    link = f"\n\nThe run in the Dagster UI: {ui_url.rstrip('/')}/runs/{run_id}" if ui_url else ""
    mail.set_content(f"The Dagster run {run_id} of {job_name} failed:\n\n{message}{link}\n")
    return mail


def mark_mailed(conn: psycopg.Connection, alert_id: int, *, to: str, error: str | None) -> None:
    conn.execute("update notification.operator_alert set mailed_to = %s, mailed_at = case when %s::text is null "
                 "then now() end, mail_error = %s where alert_id = %s", (to, error, error, alert_id))
