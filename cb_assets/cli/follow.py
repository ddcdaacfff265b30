"""Follow this command's runs through the instance's event log: a line per partition."""

import time

import dagster as dg
from dagster._core.events import DagsterEventType

from cb_assets.run_launcher.liveness import fail_dead_runs

LIVENESS_EVERY_SECONDS = 5.0


def note_for(asset: str, metadata: dict) -> str:
    if asset == "eval_results":
        how = "ran" if metadata["ran"].value else "ingested"
        return f"{how}: {metadata['outcome'].value} (merge {metadata['merge'].value})"
    if asset == "task_images":
        return f"{'pulled' if metadata['pulled'].value else 'present'}: {metadata['probe'].value}"
    how = "ran" if metadata["ran"].value else "ingested"
    return f"{how}: {metadata['outcome'].value}"


def failure_reasons(instance: dg.DagsterInstance, run: dg.DagsterRun, keys: list[str]) -> dict:
    """Why each of `keys` did not materialize in finished `run`: the step's per-partition
    reasons when it gave them, else the first line of its error, else the run's status."""
    records = instance.get_records_for_run(
        run.run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
    ).records
    steps = [r.event_log_entry for r in records if r.event_log_entry.dagster_event.is_step_failure]
    if steps:
        data = steps[-1].dagster_event.event_specific_data
        per_key = (
            data.user_failure_data.metadata.get("failed_partitions")
            if (data.user_failure_data)
            else None
        )
        first_line = data.error.message.strip().splitlines()[0] if data.error else "failed"
        return {k: (per_key.value.get(k, first_line) if per_key else first_line) for k in keys}
    runs = [r.event_log_entry for r in records]
    why = (
        runs[-1].message.strip().splitlines()[0]
        if runs
        else f"run {run.run_id[:8]} ended ({run.status.value.lower()}) without materializing it"
    )
    return dict.fromkeys(keys, why)


class RunFollower:
    """Tracks the runs this command submitted for one asset; prints each partition as the
    instance records it (a batch reports each of its partitions as it finishes) and its
    failures when its run ends. Only this command's runs count: another command's
    materializations of the same partitions are not reported as ours."""

    def __init__(self, instance: dg.DagsterInstance, asset: str, keys: list[str]) -> None:
        self._instance, self._asset_key, self._asset = instance, dg.AssetKey(asset), asset
        self._total = len(keys)
        self._seen: set[str] = set()
        self._runs: dict[str, list[str]] = {}
        self.failed: dict[str, str] = {}
        latest = instance.fetch_materializations(self._asset_key, limit=1, ascending=False)
        self._cursor = latest.records[0].storage_id if latest.records else None
        self._checked_liveness = 0.0

    def add(self, run_id: str, keys: list[str]) -> None:
        self._runs[run_id] = keys

    @property
    def active(self) -> int:
        """Runs still working on a partition. A run whose partitions have all landed only has
        its bookkeeping left (step and run end, a poll away): its slot goes to the next batch
        now rather than a second later."""
        return sum(1 for keys in self._runs.values() if not self._seen.issuperset(keys))

    @property
    def running(self) -> int:
        """Runs not ended yet, whatever is left of them."""
        return len(self._runs)

    def run_ids(self) -> list[str]:
        return list(self._runs)

    def _line(self, ok: bool, key: str, note: str) -> None:
        self._seen.add(key)
        print(
            f"[{len(self._seen)}/{self._total}] {'ok  ' if ok else 'FAIL'} {key} {note}", flush=True
        )

    def _poll_materializations(self) -> None:
        while True:
            page = self._instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=self._asset_key, after_storage_id=self._cursor),
                limit=500,
                ascending=True,
            )
            for record in page.records:
                self._cursor = record.storage_id
                event = record.asset_materialization
                keys = self._runs.get(record.run_id, ())
                if event and event.partition in keys and event.partition not in self._seen:
                    self._line(True, event.partition, note_for(self._asset, event.metadata))
            if not page.has_more:
                return

    def poll(self) -> list[str]:
        """Report what landed; return the failure reasons of runs that ended since."""
        if time.monotonic() - self._checked_liveness > LIVENESS_EVERY_SECONDS:
            self._checked_liveness = time.monotonic()
            fail_dead_runs(self._instance)  # a killed run worker would otherwise never end
        ended = [
            run
            for run in self._instance.get_runs(dg.RunsFilter(run_ids=list(self._runs)))
            if run.is_finished
        ]
        self._poll_materializations()
        reasons: list[str] = []
        for run in ended:
            keys = self._runs.pop(run.run_id)
            missing = [k for k in keys if k not in self._seen]
            for key, why in failure_reasons(self._instance, run, missing).items():
                self.failed[key] = why
                reasons.append(why)
                self._line(False, key, why)
        return reasons
