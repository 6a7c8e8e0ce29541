"""Looker lifecycle settings (``GUARDIAN_LOOKER__*``); defaults carry the original policy."""

from __future__ import annotations

from pydantic import Field

from guardian.config_types import CsvList, Section
from guardian.secrets import SecretRef


class LookerSettings(Section):
    """Policy and limits of the dashboard lifecycle service."""

    instance_name: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Name of the Looker instance, used in backup paths and messages.",
    )
    soft_delete_days: int = Field(
        180, ge=1, description="Days without access after which a dashboard is moved to the trash."
    )
    purge_days: int = Field(
        180,
        ge=1,
        description="Days in the trash after which a guardian-trashed dashboard is permanently deleted.",
    )
    warning_days: int = Field(
        14,
        ge=0,
        description="Owners are warned this many days before their dashboards become inactive.",
    )
    test_mode_limit: int = Field(10, ge=1, description="In test mode only the first N actions of a plan are applied.")
    api_timeout: int = Field(300, ge=1, description="Timeout in seconds of one Looker API call.")
    max_deletions: int = Field(
        200,
        ge=0,
        description="Circuit breaker: at most this many trashes per instance over the rolling window "
        "(breaker_window_days); an apply that would exceed it is refused.",
    )
    max_purges: int = Field(
        500,
        ge=0,
        description="Circuit breaker: at most this many purges per instance over the rolling window.",
    )
    max_fraction: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Circuit breaker: at most this fraction of the live inventory trashed per rolling window.",
    )
    breaker_window_days: int = Field(
        30, ge=1, description="Rolling window (days) over which the breaker counts trashes and purges per instance."
    )
    max_plan_age_hours: float = Field(
        72.0,
        gt=0,
        description="A plan older than this can no longer be applied (only the newest plan of an instance can).",
    )
    scheduled_mode: str = Field(
        "dry_run",
        pattern=r"^(dry_run|test|apply)$",
        description="Mode of the scheduled monthly run: dry_run, test or apply (test and apply wait for an "
        "approval in the Airflow 3 UI).",
    )
    max_keep_days: int = Field(366, ge=1, description="Longest keep an owner can ask for (`guardian looker keep`).")
    team_email: str | None = Field(
        None,
        description="Address warned instead of an owner who is gone, disabled or has no email "
        "(default: the first GUARDIAN_NOTIFY__EMAIL_TO).",
    )
    protected_folder_ids: CsvList = Field(
        default_factory=list,
        description="Folder ids (subfolders included) whose dashboards are never touched.",
    )
    protected_folder_paths: CsvList = Field(
        default_factory=list,
        description="Folder paths such as 'Shared/Finance' (subfolders included) never touched.",
    )
    allow_dashboard_ids: CsvList = Field(
        default_factory=list, description="Dashboard ids (a Look as look:ID) that are never touched."
    )
    allow_owners: CsvList = Field(
        default_factory=list, description="Owner ids or emails whose dashboards and Looks are never touched."
    )
    exclude_scheduled: bool = Field(
        True, description="Skip dashboards and Looks with an enabled schedule (any user's) or an enabled alert."
    )
    exclude_favorited: bool = Field(True, description="Skip dashboards and Looks that someone marked as favorite.")
    exclude_public: bool = Field(True, description="Skip public dashboards and Looks.")
    purge_human_trashed: bool = Field(
        False,
        description="Also purge dashboards that people (not the guardian) moved to the trash.",
    )
    backup_prefix: str = Field("looker-backups", description="Key prefix of dashboard backups under the storage root.")
    page_size: int = Field(1000, ge=1, le=10000, description="Page size of the dashboard search.")
    concurrency: int = Field(8, ge=1, le=64, description="Concurrent API calls while applying a plan.")
    rate_limit_per_second: float = Field(
        20.0, gt=0, description="Client-side limit of Looker API calls per second while applying."
    )
    api_retries: int = Field(
        5, ge=0, le=10, description="Retries of one Looker API call on 429, 5xx and connection errors."
    )
    api_backoff_seconds: float = Field(
        0.5, ge=0, le=30, description="First retry delay in seconds; doubles each retry, with jitter, capped at 20 s."
    )
    default_folder_id: str | None = Field(
        None,
        description="Folder for re-imported dashboards whose original folder is gone (else such a restore fails).",
    )
    client_secret_ref: SecretRef | None = Field(
        None,
        description="Optional secret reference for the API client secret (else LOOKERSDK_CLIENT_SECRET).",
    )
