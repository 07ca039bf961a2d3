"""Run-failure handling: every failed run becomes an operator alert, mailed to the operator address with SMTP."""

from __future__ import annotations

import dagster as dg

from covr_core.platform.settings import Settings
from covr_pipelines.resources import PostgresResource


def build_run_failure_sensor(settings: Settings):
    operator, ui_url, from_address = settings.operator_email, settings.dagster_ui_url, settings.smtp_from

    @dg.run_failure_sensor(
        name="run_failure_alert_sensor",
        default_status=dg.DefaultSensorStatus.RUNNING,
        monitor_all_code_locations=False,
        description="Records an operator alert for each failed run (notification.operator_alert) and mails it to "
                    "COVR_OPERATOR_EMAIL when SMTP is configured.",
    )
    def run_failure_alert_sensor(context: dg.RunFailureSensorContext, postgres: PostgresResource):
        from covr_core.notifications import alerts
        from covr_core.notifications.worker import WorkerConfig

        run = context.dagster_run
        # The run's own failure only names the failed steps; each step's error is what an operator acts on.
        message = "\n".join([context.failure_event.message or "run failed"] + [
            f"{e.step_key}: {_error_words(e.step_failure_data.error)}"
            for e in context.get_step_failure_events() if e.step_failure_data.error is not None])
        with postgres.connection() as conn:
            alert_id = alerts.record_run_failure(conn, run_id=run.run_id, job_name=run.job_name, message=message)
            if alert_id is None:
                return
            mailer_factory = WorkerConfig.from_settings(settings).mailer_factory
            if operator and mailer_factory:
                error = None
                mailer = mailer_factory()
                try:
                    mailer.send(alerts.compose_alert(
                        to=operator, from_address=from_address, run_id=run.run_id, job_name=run.job_name,
                        message=message, ui_url=ui_url))
                    mailer.close()
                except Exception as exc:  # noqa: BLE001 - the alert stays recorded; the mail error with it
                    error = str(exc)[:500] or type(exc).__name__
                alerts.mark_mailed(conn, alert_id, to=operator, error=error)
        context.log.warning(f"alert {alert_id}: run {run.run_id} of {run.job_name} failed: {message}")

    return run_failure_alert_sensor


def _error_words(error) -> str:
    """A step's error without Dagster's module path: "Failure: no failed image named ..." for a dg.Failure."""
    text = error.message.strip()
    head, sep, rest = text.partition(": ")
    if sep and error.cls_name and head.endswith(error.cls_name):
        return rest if error.cls_name == "Failure" else f"{error.cls_name}: {rest}"
    return text
