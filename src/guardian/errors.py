"""Domain errors: each one is a mistake a person can act on, printed as one line."""

from __future__ import annotations


class GuardianError(Exception):
    """Base of every error the guardian raises on purpose.

    The message is one line naming the input and the fix; the CLI prints it without a
    traceback and exits with ``exit_code``.
    """

    exit_code = 2


class ConfigError(GuardianError):
    """A setting is malformed, unknown or missing."""


class StoreError(GuardianError):
    """The Guardian store cannot be reached or is not migrated."""


class StorageError(GuardianError):
    """Object storage refused or failed an operation."""


class AlreadyExists(StorageError):
    """A write-once put found an object already at that key."""


class NotFound(StorageError):
    """No object at that key."""


class ValidationFailed(GuardianError):
    """User input (a param, a sheet row, a CLI flag) failed validation."""


class SafetyGateTripped(GuardianError):
    """A destructive plan exceeded its bounds and was refused."""


class IntegrationError(GuardianError):
    """An external system (Looker, BigQuery, Sheets, SMTP, Slack) failed after retries."""
