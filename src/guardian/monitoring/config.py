"""Alerting, monitoring and web UI settings.

``GUARDIAN_NOTIFY__*``, ``GUARDIAN_MONITORING__*`` and ``GUARDIAN_WEB__*``.
"""

from __future__ import annotations

from pydantic import Field

from guardian.config_types import CsvList, Section
from guardian.secrets import SecretRef


class NotifySettings(Section):
    """Where alerts and notifications go."""

    email_to: CsvList = Field(
        default_factory=lambda: ["data-team@example.com"],
        description="Team address(es) for summaries and alerts.",
    )
    email_from: str = Field("airflow-guardian@example.com", description="Sender address.")
    smtp_host: str | None = Field(
        None,
        description="SMTP server; unset means email is not configured (the smtp_default connection inside Airflow).",
    )
    smtp_port: int = Field(25, ge=1, le=65535, description="SMTP port (465: implicit TLS).")
    smtp_starttls: bool = Field(False, description="Use STARTTLS (needed to log in on a port other than 465).")
    smtp_user: str | None = Field(None, description="SMTP user name.")
    smtp_password_ref: SecretRef | None = Field(None, description="Secret reference of the SMTP password.")
    slack_webhook_ref: SecretRef | None = Field(None, description="Secret reference of the Slack incoming-webhook URL.")
    timeout: int = Field(30, ge=1, description="Timeout in seconds of one email or Slack delivery.")
    ui_base_url: str = Field(
        "http://localhost:8080",
        description="Base URL used in links to Airflow and the Guardian UI.",
    )
    slack_dags: CsvList = Field(
        default_factory=lambda: [
            "looker_dashboard_deletion",
            "bigquery_sales_query",
            "google_sheet_trigger_dag",
            "guardian_health",
        ],
        description="Critical DAGs whose failures also go to Slack ('*' for every DAG); email covers all DAGs.",
    )
    alert_on_retry: bool = Field(False, description="Also email when a task is retried (not only when it fails).")
    outbox_expiry_hours: float = Field(
        24, gt=0, description="Hours a threshold alert's delivery is retried before it is marked expired."
    )
    outbox_backoff_seconds: float = Field(60, gt=0, description="First retry delay of an undelivered alert.")
    outbox_backoff_max: float = Field(3600, gt=0, description="Longest retry delay of an undelivered alert.")


class MonitoringSettings(Section):
    """DAG health thresholds and the Airflow REST API."""

    airflow_api_url: str | None = Field(None, description="Airflow REST API base URL, e.g. http://localhost:8080.")
    airflow_username: str | None = Field(None, description="Airflow API user.")
    airflow_password_ref: SecretRef | None = Field(None, description="Secret reference of the Airflow API password.")
    failure_rate_threshold: float = Field(
        0.2, ge=0, le=1, description="Alert when the failure rate of the recent window exceeds this (and its baseline)."
    )
    failure_rate_window: int = Field(10, ge=1, description="How many recent finished runs the failure rate judges.")
    failure_rate_min_runs: int = Field(
        3, ge=1, description="No failure-rate alert for a DAG with fewer finished runs than this in the window."
    )
    failure_rate_baseline_runs: int = Field(
        50, ge=1, description="How many finished runs before the window form its baseline failure rate."
    )
    failure_rate_margin: float = Field(
        0.1,
        ge=0,
        le=1,
        description="The window's failure rate must exceed the baseline's by more than this to alert "
        "(a DAG that always failed this often is not a regression).",
    )
    failure_rate_ceiling: float = Field(
        0.5, ge=0, le=1, description="A window failure rate at or above this alerts whatever the baseline."
    )
    slow_factor: float = Field(
        2.0, gt=1, description="Alert when the latest run took longer than this many times the DAG's 30-day p95."
    )
    slow_min_runs: int = Field(5, ge=2, description="Runs needed in 30 days before the slow-run check applies.")
    expected_intervals: CsvList = Field(
        default_factory=lambda: [
            "google_sheet_trigger_dag=15m",
            "looker_dashboard_deletion=32d",
            "guardian_health=3h",
        ],
        description="dag_id=duration entries (m, h, d): alert when a DAG has had no success for that long.",
    )
    quality_window_hours: int = Field(
        24, ge=1, description="Error-severity data-quality failures newer than this raise an alert."
    )
    history_days: int = Field(90, ge=1, description="How many days of run history the health snapshots keep.")
    task_usage: bool = Field(
        True, description="Record each task try's peak RSS and CPU seconds (the guardian listener)."
    )
    api_timeout: int = Field(15, ge=1, description="Timeout in seconds of one Airflow REST API call.")
    api_page_size: int = Field(100, ge=1, le=1000, description="Page size of Airflow REST API list calls.")


class WebSettings(Section):
    """The Guardian web UI."""

    host: str = Field("127.0.0.1", description="Address `guardian serve` listens on.")
    port: int = Field(8090, ge=1, le=65535, description="Port `guardian serve` listens on.")
    session_secret_ref: SecretRef | None = Field(
        None,
        description="Secret reference of the session-signing key (generated per process when unset).",
    )
    users: CsvList = Field(
        default_factory=list,
        description="Standalone UI users as name:role:env:VAR entries (role viewer, operator, approver or admin; "
        "the env var holds an argon2 hash from `guardian web hash-password`).",
    )
    metrics_token_ref: SecretRef | None = Field(
        None, description="Secret reference of the bearer token /metrics requires (unset: /metrics answers 401)."
    )
    session_max_age: int = Field(8 * 3600, ge=60, description="Seconds a standalone UI login stays valid.")
    secure_cookies: bool = Field(
        True, description="Mark the session cookie Secure (HTTPS only); turn off only for local plain-http use."
    )
    login_max_failures: int = Field(
        5, ge=1, description="Failed logins per user name within login_window before logins answer 429."
    )
    login_max_failures_per_address: int = Field(
        20, ge=1, description="Failed logins per client address within login_window before logins answer 429."
    )
    login_window: int = Field(900, ge=1, description="Seconds over which failed logins are counted.")
    airflow_ui_url: str | None = Field(
        None, description="Airflow UI base URL for links from the Guardian UI (default: GUARDIAN_NOTIFY__UI_BASE_URL)."
    )
