"""The run's byte budget and idempotent jobs, against a BigQuery jobs service double with state.

The double keeps every job by id (insert of an existing id: 409 Conflict, as BigQuery's
jobs.insert does), refuses a job whose bytes exceed its ``maximumBytesBilled`` without billing
it, and bills each accepted job the bytes its SQL reads (from the double's table of sizes).
The code under test is the real ``BigQueryWarehouse._job`` and ``RunBudget``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from guardian.sales.bigquery_backend import BigQueryWarehouse
from guardian.sales.budget import CostLimitExceeded, JobStats, RunBudget, job_base, label_value
from guardian.sales.sql import TableRef
from guardian.settings import load_settings

LIMIT = 1000
STEPS = ("run_query", "quality_gate", "export")


class WorkerKilled(BaseException):
    """kill -9 of the worker right after BigQuery accepted the job."""


@dataclass
class FakeJob:
    job_id: str
    bytes: int
    error: dict[str, str] | None = None
    slot_millis: int = 1
    state: str = "DONE"
    started: Any = None
    ended: Any = None
    _properties: dict[str, Any] = field(default_factory=dict)

    @property
    def error_result(self) -> dict[str, str] | None:
        return self.error

    @property
    def total_bytes_processed(self) -> int:
        return 0 if self.error else self.bytes

    @property
    def total_bytes_billed(self) -> int:
        return 0 if self.error else self.bytes

    def result(self, **_kwargs: Any) -> list[Any]:
        if self.error:
            raise gexc.BadRequest(self.error["message"], errors=[self.error])
        return []


@dataclass
class FakeBigQuery:
    sizes: dict[str, int]  # what each SQL reads
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    kill_after_insert: bool = False
    produced: set[str] = field(default_factory=set)  # SQL whose job completed: its output exists

    @property
    def billed(self) -> dict[str, int]:
        return {j.job_id: j.bytes for j in self.jobs.values() if not j.error}

    def get_job(self, job_id: str, **_kwargs: Any) -> FakeJob:
        if job_id not in self.jobs:
            raise gexc.NotFound(f"Not found: Job {job_id}")
        return self.jobs[job_id]

    def query(self, sql: str, *, job_config: Any, job_id: str, **_kwargs: Any) -> FakeJob:
        if job_id in self.jobs:
            raise gexc.Conflict(f"Already Exists: Job {job_id}")
        cost = self.sizes[sql]
        job = FakeJob(job_id, cost)
        if job_config.maximum_bytes_billed is None or cost > int(job_config.maximum_bytes_billed):
            job.error = {"reason": "bytesBilledLimitExceeded", "message": f"Query exceeded limit: {cost}"}
        else:
            self.produced.add(sql)
        self.jobs[job_id] = job
        if self.kill_after_insert:
            self.kill_after_insert = False
            raise WorkerKilled
        return job


def _warehouse(client: FakeBigQuery) -> BigQueryWarehouse:
    return BigQueryWarehouse(client, TableRef("guardian-demo", "sales", "sales_entries"), "results", load_settings())


class BudgetMachine(RuleBasedStateMachine):
    """People run, retry and clear steps of one run; workers die right after submitting jobs."""

    @initialize(costs=st.lists(st.integers(0, 600), min_size=len(STEPS), max_size=len(STEPS)))
    def setup(self, costs: list[int]) -> None:
        self.client = FakeBigQuery(dict(zip(STEPS, costs, strict=True)))
        self.warehouse = _warehouse(self.client)
        self.record: dict[str, Any] = {"jobs": []}  # the persisted run record
        self.clears = dict.fromkeys(STEPS, 0)
        self.pending: str | None = None  # a step whose worker died; Airflow retries it before anything downstream

    def _run(self, step: str) -> None:
        budget = RunBudget.from_record(LIMIT, "run-1", self.record)
        budget.on_record = lambda b: self.record.update(jobs=b.as_json())
        spec = budget.spec(step, need=0)
        try:
            self.warehouse._job(step, {}, spec, valid=lambda _job: step in self.client.produced)
        except WorkerKilled:
            self.pending = step
            return
        except CostLimitExceeded:
            pass
        self.pending = None

    @precondition(lambda self: self.pending is None)
    @rule(step=st.sampled_from(STEPS))
    def run_step(self, step: str) -> None:
        self._run(step)

    @precondition(lambda self: self.pending is None)
    @rule(step=st.sampled_from(STEPS))
    def kill_worker_after_submit(self, step: str) -> None:
        self.client.kill_after_insert = True
        self._run(step)

    @precondition(lambda self: self.pending is not None)
    @rule()
    def retry(self) -> None:
        assert self.pending is not None
        self._run(self.pending)

    @precondition(lambda self: self.pending is None)
    @rule(step=st.sampled_from(STEPS))
    def clear_after_output_lost(self, step: str) -> None:
        self.client.produced.discard(step)
        self.clears[step] += 1

    @invariant()
    def never_bills_past_the_budget(self) -> None:
        # The bytes billed by all of a run's jobs never exceed its budget.
        assert sum(self.client.billed.values()) <= LIMIT

    @invariant()
    def a_retry_never_bills_twice(self) -> None:
        for step in STEPS:
            billed = [j for j in self.client.billed if j.startswith(job_base("run-1", step))]
            assert len(billed) <= self.clears[step] + 1

    @invariant()
    def the_record_counts_each_billed_job_once(self) -> None:
        if self.pending is None:
            recorded = {j["job_id"]: j["bytes_billed"] for j in self.record["jobs"]}
            assert recorded == self.client.billed


TestBudget = BudgetMachine.TestCase
TestBudget.settings = settings(
    max_examples=60,
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def test_spec_refuses_a_step_that_needs_more_than_remains() -> None:
    budget = RunBudget(100, "r")
    budget.record(JobStats("j1", "run_query", 70, 70))
    assert budget.remaining == 30 and budget.spec("export", need=30).maximum_bytes_billed == 30
    with pytest.raises(CostLimitExceeded, match=r"run r has 30 of its 100 bytes left .* export step needs 31"):
        budget.spec("export", need=31)
    budget.record(JobStats("j1", "run_query", 70, 70))  # a reattached job is counted once
    assert budget.spent == 70


def test_a_free_job_runs_with_the_budget_spent_but_a_billed_one_does_not() -> None:
    budget = RunBudget(100, "r")
    budget.record(JobStats("j1", "run_query", 100, 100))
    with pytest.raises(CostLimitExceeded, match="the export step needs 0"):
        budget.spec("export")
    spec = budget.spec("export", free=True)  # an extract job: BigQuery bills nothing for it
    with pytest.raises(CostLimitExceeded, match="nothing remains"):
        spec.require()  # and a billed job submitted under it would still be refused
    with pytest.raises(CostLimitExceeded):
        budget.spec("export", need=1, free=True)


def test_job_ids_are_deterministic_and_labels_valid() -> None:
    assert job_base("manual__2026-01-01T00:00:00+00:00", "export", "a") == job_base(
        "manual__2026-01-01T00:00:00+00:00", "export", "a"
    )
    assert job_base("r", "export", "a") != job_base("r", "export", "b")
    labels = RunBudget(1, "manual__2026-01-01T00:00:00+00:00", requester="Ana@Example.com").labels("run_query")
    assert labels["requester"] == "ana_example_com" and all(len(v) <= 63 for v in labels.values())
    assert label_value("A" * 100) == "a" * 63
