"""One byte budget per run, across all its jobs, and the identity of each job.

Every job a run submits (the query, the quality checks, the slice listing, each export) is
named by :func:`job_base` from the run id and the step, and carries ``maximum_bytes_billed``
equal to what remains of the run's budget when it starts. The warehouse reports each finished
job once (:meth:`RunBudget.record`, keyed by job id), so a retried task that reattaches to its
job never counts, nor bills, the bytes twice.

The budget itself is pure: it is rebuilt from the run record's ``jobs`` list at the start of
each step, so it survives task retries, worker restarts and cleared tasks.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from guardian.errors import GuardianError


class CostLimitExceeded(GuardianError):
    """A run's jobs would bill (or a job did try to bill) more than the run's byte budget."""


# BigQuery label values: lowercase letters, digits, '_' and '-', at most 63 characters
# (https://cloud.google.com/bigquery/docs/labels-intro#requirements).
_LABEL_BAD = re.compile(r"[^a-z0-9_-]+")


def label_value(value: str | None) -> str:
    """A string as a BigQuery label value (lowercased, other characters as '_', 63 at most)."""
    return _LABEL_BAD.sub("_", (value or "").lower())[:63]


def job_base(run_id: str, step: str, fingerprint: str = "") -> str:
    """The deterministic id stem of a run's job at ``step``; the warehouse appends a generation.

    BigQuery job ids allow letters, digits, '_' and '-' up to 1,024 characters; the same run,
    step and fingerprint (what the job computes) always give the same id, which is what lets a
    retry find and reattach to the job of an attempt that died.
    """
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", run_id).strip("_")[:60] or "run"
    digest = hashlib.sha256(f"{run_id}\x00{step}\x00{fingerprint}".encode()).hexdigest()[:12]
    safe_step = re.sub(r"[^A-Za-z0-9_-]+", "_", step)[:80]
    return f"guardian_sales_{slug}_{safe_step}_{digest}"


@dataclass(frozen=True)
class JobStats:
    """What one finished job processed and billed (``bytes_billed`` None: the backend bills nothing)."""

    job_id: str
    step: str
    bytes_processed: int
    bytes_billed: int | None
    slot_ms: int | None = None
    maximum_bytes_billed: int | None = None
    rows: int | None = None

    @property
    def charged(self) -> int:
        """Bytes counted against the budget: billed where the backend bills, else processed."""
        return self.bytes_billed if self.bytes_billed is not None else self.bytes_processed


@dataclass
class JobSpec:
    """How the warehouse must submit one job: its id stem, labels, byte cap, and where to report it.

    The cap is read at submit time (``maximum_bytes_billed``): a job recorded meanwhile, e.g.
    an earlier generation found billed but with its output gone, lowers it.
    """

    base_id: str
    step: str
    labels: dict[str, str]
    remaining: Callable[[], int] = field(repr=False)
    on_done: Callable[[JobStats], None] = field(repr=False, default=lambda _stats: None)

    @property
    def maximum_bytes_billed(self) -> int:
        """What remains of the run's budget now."""
        return self.remaining()

    def require(self) -> int:
        """The cap for a job about to be submitted; refuses when nothing remains."""
        cap = self.remaining()
        if cap <= 0:
            raise CostLimitExceeded(
                f"cost guard: nothing remains of the run's byte budget for the {self.step} job {self.base_id}; "
                "raise GUARDIAN_SALES__MAX_BYTES_BILLED"
            )
        return cap


@dataclass
class RunBudget:
    """The run's limit and the jobs recorded so far."""

    limit: int
    run_id: str
    dag_id: str = "bigquery_sales_query"
    requester: str | None = None
    jobs: dict[str, JobStats] = field(default_factory=dict)
    # Called with every newly recorded job (the service persists the record).
    on_record: Callable[[RunBudget], None] = field(repr=False, default=lambda _budget: None)

    @classmethod
    def from_record(
        cls, limit: int, run_id: str, record: Mapping[str, Any] | None, *, requester: str | None = None
    ) -> RunBudget:
        """The budget of a run as its record stands (jobs recorded by earlier steps and attempts)."""
        budget = cls(limit, run_id, requester=requester)
        for raw in (record or {}).get("jobs") or []:
            stats = JobStats(**{k: raw.get(k) for k in JobStats.__dataclass_fields__})
            budget.jobs[stats.job_id] = stats
        return budget

    @property
    def spent(self) -> int:
        """Bytes charged by every recorded job."""
        return sum(j.charged for j in self.jobs.values())

    @property
    def remaining(self) -> int:
        """What is left of the budget (never negative)."""
        return max(0, self.limit - self.spent)

    def totals(self) -> tuple[int, int | None]:
        """(bytes processed, bytes billed) summed over the run's jobs (billed None if nothing bills)."""
        processed = sum(j.bytes_processed for j in self.jobs.values())
        billed = [j.bytes_billed for j in self.jobs.values() if j.bytes_billed is not None]
        return processed, (sum(billed) if billed else None)

    def labels(self, step: str) -> dict[str, str]:
        """The labels of a job of this run at ``step``: dag, task, run id and requester."""
        return {
            "guardian": "sales",
            "dag": label_value(self.dag_id),
            "task": label_value(step),
            "run_id": label_value(self.run_id),
            "requester": label_value(self.requester) or "unknown",
        }

    def spec(self, step: str, fingerprint: str = "", *, need: int = 0, free: bool = False) -> JobSpec:
        """The spec of the next job at ``step``; refuses (before anything runs) when ``need`` exceeds what remains.

        ``free``: a job the warehouse does not bill (a BigQuery extract job) runs whatever remains.
        """
        remaining = self.remaining
        if (remaining <= 0 and not free) or need > remaining:
            raise CostLimitExceeded(
                f"cost guard: run {self.run_id} has {remaining} of its {self.limit} bytes left "
                f"(spent {self.spent}), the {step} step needs {need}; narrow the request or raise "
                "GUARDIAN_SALES__MAX_BYTES_BILLED"
            )
        return JobSpec(
            job_base(self.run_id, step, fingerprint), step, self.labels(step), lambda: self.remaining, self.record
        )

    def record(self, stats: JobStats) -> None:
        """Count a finished job once (a reattached job is already known by its id)."""
        if stats.job_id in self.jobs:
            return
        self.jobs[stats.job_id] = stats
        self.on_record(self)

    def as_json(self) -> list[dict[str, Any]]:
        """The jobs as stored on the run record and in the manifest."""
        return [asdict(j) for j in self.jobs.values()]


def run_estimate(parts: Iterable[tuple[str, int]]) -> int:
    """The whole run's estimate: the sum of each step's estimate."""
    return sum(n for _step, n in parts)


def stable_json(value: Any) -> str:
    """A canonical JSON text (a job fingerprint from params)."""
    return json.dumps(value, sort_keys=True, default=str)
