"""Landing → visible latency under a real local Airflow: cron, @continuous, S3 notifications.

Three DMS pipelines in one local Airflow (tools/local_airflow.py), each with its own bucket,
dataset and Aurora database, measured one after the other (each alone on the machine, as a
deployment runs one of them; BENCH_TOGETHER=1 runs them side by side; BENCH_WAYS picks some):

- `cron`:       schedule `* * * * *`, the deferrable sensor (poke every BENCH_POKE_SECONDS)
- `continuous`: schedule `@continuous` (max_active_runs=1), the same sensor: a run always waits
- `events`:     S3 notifications → SQS → asset watcher (SqsSensorTrigger); cron `*/30` as the sweep

BENCH_FILES (default 20) CDC files land one by one after random pauses (BENCH_GAP_SECONDS,
default 5-45, the same pauses for every way). A poller reads each target's view every second
until the file's change is visible. Prints p50/p95 per way and target, where the seconds went
(from the REST API's task instance times) and S3/SQS requests and triggerer load per hour.
BENCH_HOME keeps the Airflow home (task logs) after the run.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins"), str(REPO)]

from tests.deployed.worlds import Deployment  # noqa: E402
from tools.local_airflow import LocalAirflow  # noqa: E402
from tools.local_stack import LocalStack  # noqa: E402

FILES = int(os.environ.get("BENCH_FILES", "20"))
POKE = int(os.environ.get("BENCH_POKE_SECONDS", "15"))
GAP = tuple(float(s) for s in os.environ.get("BENCH_GAP_SECONDS", "5-45").split("-"))
WAYS = tuple(os.environ.get("BENCH_WAYS", "cron,continuous,events").split(","))
# one way at a time (each alone on the machine, as a deployment runs one of them), or side by side
TOGETHER = os.environ.get("BENCH_TOGETHER", "") == "1"
TARGETS = ("bigquery", "aurora")
LISTS_PER_LOOK = 2  # ListObjectsV2 calls per DMS table per look: the load walk and the CDC walk
SQS_IDLE_RECEIVES_PER_HOUR = 3600 / (20 + 1)  # events.WAIT_TIME_SECONDS long poll + WAITER_DELAY_SECONDS


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class Visibility(threading.Thread):
    """Polls one target view of one way (a thread each); records when customer i shows qty 1000+i."""

    def __init__(self, deployment: Deployment, way: str, target: str, seen: dict, stop: threading.Event):
        super().__init__(daemon=True)
        self.world, self.way, self.target = deployment.worlds[way], way, target
        self.seen, self.stop = seen, stop
        self.loops, self.busy = 0, 0.0

    def run(self) -> None:
        while not self.stop.is_set():
            began = time.time()
            try:
                rows = self.world.view_rows() if self.target == "bigquery" else self.world.aurora_rows()
            except Exception as error:  # noqa: BLE001  # a busy emulator: read again
                print(f"{self.way} {self.target}: view read failed ({error}); again", file=sys.stderr)
                rows = {}
            now = time.time()
            for key, row in rows.items():
                if row.get("qty") == 1000 + key:
                    self.seen.setdefault((self.way, self.target, key), now)
            self.loops += 1
            self.busy += now - began
            self.stop.wait(max(0.0, 1.0 - (now - began)))


def _rows(world, target: str) -> int:
    """Rows in a target's view; -1 until the first load has made it."""
    try:
        return len(world.view_rows() if target == "bigquery" else world.aurora_rows())
    except Exception:  # noqa: BLE001  # the emulator's NotFound, MySQL's no such table
        return -1


def _all_runs(deployment: Deployment, dag_id: str) -> list[dict]:
    runs: list[dict] = []
    while True:
        page = deployment.airflow.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100&offset={len(runs)}")
        runs += page["dag_runs"]
        if len(runs) >= page["total_entries"] or not page["dag_runs"]:
            return runs


def _run_times(deployment: Deployment, dag_id: str) -> list[dict]:
    """Per run: its type, queued/start times and its tasks' start/end times (epoch seconds)."""
    out = []
    for run in _all_runs(deployment, dag_id):
        tis: dict[str, tuple[float | None, float | None]] = {}
        for ti in deployment.task_instances(dag_id, run["dag_run_id"]):
            start, end = _ts(ti["start_date"]), _ts(ti["end_date"])
            old = tis.get(ti["task_id"])
            if old:  # mapped: first start, last end
                start = min(x for x in (start, old[0]) if x is not None) if (start or old[0]) else None
                end = max(x for x in (end, old[1]) if x is not None) if (end or old[1]) else None
            tis[ti["task_id"]] = (start, end)
        out.append(
            {
                "run_type": run["run_type"],
                "queued": _ts(run.get("queued_at")),
                "start": _ts(run["start_date"]),
                "end": _ts(run.get("end_date")),
                "tis": tis,
            }
        )
    return out


def _phases(landed: float, runs: list[dict]) -> dict[str, float | str] | None:
    """Where one file's seconds went, in the run whose planner first listed after it landed."""
    candidates = [
        r for r in runs if r["tis"].get("plan_batches", (None, None))[0] and r["tis"]["plan_batches"][0] >= landed
    ]
    if not candidates:
        return None
    run = min(candidates, key=lambda r: r["tis"]["plan_batches"][0])
    # a run was planning or loading when the file landed: it waited for that run to end
    busy = any((r["tis"].get("plan_batches", (None,))[0] or landed + 1) <= landed <= (r["end"] or landed) for r in runs)
    tis = run["tis"]
    sensor_end = tis.get("wait_for_new_files", (None, None))[1] or run["start"]
    plan_start, plan_end = tis["plan_batches"]
    loads = [tis[t] for t in ("load_to_bigquery", "load_to_aurora") if t in tis and tis[t][0] and tis[t][1]]
    return {
        "run": run["run_type"],
        "busy": busy,
        # landing → the run notices: the cron tick or SQS message + scheduler, or the trigger's poke
        "notice": max(sensor_end, run["start"] or sensor_end) - landed,
        "queued": (run["queued"] - landed) if run["queued"] and run["queued"] >= landed else 0.0,
        "plan_start": plan_start - sensor_end,  # the planner's task waits for a worker process
        "plan": plan_end - plan_start,
        "load_start": min(start for start, _ in loads) - plan_end,
        "load": statistics.median(end - start for start, end in loads),
    }


def main() -> None:
    with LocalStack.start() as stack, tempfile.TemporaryDirectory() as tmp:
        home = Path(os.environ.get("BENCH_HOME") or Path(tmp) / "airflow-home")
        deployment = Deployment(stack, uuid.uuid4().hex[:6], Path(tmp))
        options = {"poke_interval_seconds": POKE, "wait_timeout_minutes": 50}
        adders = {
            "cron": lambda: deployment.add_dms("cron", "* * * * *", **options),
            "continuous": lambda: deployment.add_dms("continuous", "@continuous", **options),
            "events": lambda: deployment.add_notified_dms("events", "*/30 * * * *"),
        }
        for way in WAYS:
            adders[way]()
        deployment.write_config()
        for way in WAYS:  # the rows the files change, loaded before the clock starts
            deployment.worlds[way].seed(range(1, FILES + 1))
        airflow = LocalAirflow.start(
            stack, home=home, config_path=deployment.config_path, connections=deployment.connections()
        )
        deployment.airflow = airflow
        seen: dict[tuple[str, str, int], float] = {}
        landed: dict[tuple[str, int], float] = {}
        runs: dict[str, list[dict]] = {}
        hours: dict[str, float] = {}
        try:
            deployment.wait_for_dags()
            groups = [WAYS] if TOGETHER else [(way,) for way in WAYS]
            for group in groups:
                began = time.time()
                _measure(deployment, group, landed, seen)
                for way in group:
                    hours[way] = (time.time() - began) / 3600
                    runs[way] = _run_times(deployment, deployment.dag_id(way))
        finally:
            for way in WAYS:
                try:
                    deployment.set_paused(deployment.dag_id(way), True)
                except Exception:  # noqa: BLE001  # stopping anyway
                    pass
            airflow.stop()
            airflow.drop_database()
            deployment.close()
    _report(landed, seen, runs, hours)


def _measure(deployment: Deployment, ways: tuple[str, ...], landed: dict, seen: dict) -> None:
    """Unpause `ways`, wait for their full loads, land the FILES files (same pauses for every
    group: the seed is fixed), wait until every change is visible in both targets, pause them."""
    rng = random.Random(18)
    stop = threading.Event()
    watchers = [Visibility(deployment, way, target, seen, stop) for way in ways for target in TARGETS]
    try:
        for way in ways:
            deployment.set_paused(deployment.dag_id(way), False)
        for way in ways:
            world = deployment.worlds[way]
            deployment.wait_until(
                f"the full load of {way}",
                lambda world=world: _rows(world, "bigquery") == _rows(world, "aurora") == FILES,
                timeout=600,
                every=2,
            )
        print(
            f"{'+'.join(ways)}: {FILES} rows in every target; landing {FILES} files, {GAP[0]:.0f}-{GAP[1]:.0f}s apart"
        )
        for watcher in watchers:
            watcher.start()
        for key in range(1, FILES + 1):
            time.sleep(rng.uniform(*GAP))
            for way in ways:
                world = deployment.worlds[way]
                world.dms.update(world.customers, {"id": key}, {"qty": 1000 + key})
                world.dms.flush(world.customers)
                landed[(way, key)] = time.time()
        deployment.wait_until(
            "every file visible in every target",
            lambda: all(
                (way, target, key) in seen for way in ways for target in TARGETS for key in range(1, FILES + 1)
            ),
            timeout=900,
            every=2,
        )
    finally:
        stop.set()
        for way in ways:
            deployment.set_paused(deployment.dag_id(way), True)
    reads = [w.busy / max(1, w.loops) for w in watchers]
    print(f"  done; each view read every {max(1.0, statistics.mean(reads)):.1f}s")


def _report(landed: dict, seen: dict, runs: dict[str, list[dict]], hours_per_way: dict[str, float]) -> None:
    how = "side by side" if TOGETHER else "one way at a time"
    print(f"\n{FILES} files per way, {how}")
    print(f"{'way':<11} {'target':<9} {'p50 s':>6} {'p95 s':>6} {'max s':>6}")
    for way in WAYS:
        for target in TARGETS:
            lat = [seen[(way, target, k)] - landed[(way, k)] for k in range(1, FILES + 1)]
            print(f"{way:<11} {target:<9} {statistics.median(lat):6.1f} {_percentile(lat, 0.95):6.1f} {max(lat):6.1f}")
    print("\nwhere the seconds went (median per file, in the run whose planner first listed after it landed):")
    print("notice = landing → the run's sensor done; queued = landing → run queued (events: SQS + scheduler)")
    phases = ("notice", "queued", "plan_start", "plan", "load_start", "load")
    print(f"{'way':<11} " + " ".join(f"{p:>10}" for p in phases) + "  runs")
    for way in WAYS:
        rows = [p for k in range(1, FILES + 1) if (p := _phases(landed[(way, k)], runs[way]))]
        if not rows:
            print(f"{way:<11} (no run matched)")
            continue
        kinds = ",".join(sorted({str(p["run"]) for p in rows}))
        idle = [float(p["notice"]) for p in rows if not p["busy"]]
        kinds += f"; {len(idle)} landed with no run loading: notice p50 " + (
            f"{statistics.median(idle):.1f}s max {max(idle):.1f}s" if idle else "-"
        )
        print(
            f"{way:<11} "
            + " ".join(f"{statistics.median(float(p[n]) for p in rows):10.1f}" for n in phases)
            + f"  {kinds}"
        )
    print("\nrequests and triggerer load per hour (from the runs and sensor times observed; 1 table)")
    print(f"{'way':<11} {'runs/h':>7} {'S3 LIST/h':>10} {'SQS/h':>6} {'triggers':>9}")
    for way in WAYS:
        rs, hours = runs[way], hours_per_way[way]
        deferred = sum(
            max(0.0, (r["tis"]["wait_for_new_files"][1] or 0) - (r["tis"]["wait_for_new_files"][0] or 0))
            for r in rs
            if "wait_for_new_files" in r["tis"] and way != "events"
        )
        planned = sum(1 for r in rs if r["tis"].get("plan_batches", (None, None))[0])
        looks = len(rs) + deferred / POKE  # the sensor's first look in every run, then a poke per interval
        lists = (looks + planned) * LISTS_PER_LOOK
        sqs = (SQS_IDLE_RECEIVES_PER_HOUR * hours + 2 * FILES) if way == "events" else 0
        triggers = 1.0 if way == "events" else deferred / (hours * 3600)
        print(f"{way:<11} {len(rs) / hours:7.0f} {lists / hours:10.0f} {sqs / hours:6.0f} {triggers:9.2f}")
    print(f"  (S3 LIST $0.005 per 1,000; SQS $0.40 per million; sensor poke every {POKE}s)")


if __name__ == "__main__":
    main()
