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
        description="Circuit breaker: a plan that trashes more dashboards than this is refused.",
    )
    max_fraction: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Circuit breaker: a plan that trashes more than this fraction of the inventory is refused.",
    )
    protected_folder_ids: CsvList = Field(
        default_factory=list,
        description="Folder ids (subfolders included) whose dashboards are never touched.",
    )
    protected_folder_paths: CsvList = Field(
        default_factory=list,
        description="Folder paths such as 'Shared/Finance' (subfolders included) never touched.",
    )
    allow_dashboard_ids: CsvList = Field(default_factory=list, description="Dashboard ids that are never touched.")
    allow_owners: CsvList = Field(
        default_factory=list, description="Owner ids or emails whose dashboards are never touched."
    )
    exclude_scheduled: bool = Field(True, description="Skip dashboards that have a schedule.")
    exclude_favorited: bool = Field(True, description="Skip dashboards that someone marked as favorite.")
    exclude_public: bool = Field(True, description="Skip public dashboards.")
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
