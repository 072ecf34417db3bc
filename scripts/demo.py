"""`make demo`: the whole model lifecycle on 2013, from an empty MLOPS_HOME, January into the summer.

Each day of the replay happens as production would see it:
  traffic  once a champion exists, the prediction service answers the day's flights over HTTP before they fly
           (the champion, and the challenger's share of flights while a canary runs); every answer is logged
  ingest   upstream drops the day's flights and weather into landing/ (a few drops with faults: unavailable,
           corrupt, late) and ingest_flights validates and curates them, which brings in yesterday's outcomes
  train    the curated Asset starts train_model until there is a champion; its gate triggers deploy_model
  monitor  monitor_model compares the trailing two weeks (monitoring.yaml's window_days) with the champion's
           reference profile and its live outcomes; on drift or decay for consecutive days it alerts and
           triggers train_model (with a cool-down)
  deploy   deploy_model promotes the first model directly; a later one runs as a canary beside the champion
           until enough outcomes came in for both arms, then it is promoted or rolled back on that evidence

The DAGs are the real ones, run with dag.test() in this process in date order. A run that a trigger queues
(TriggerDagRunOperator) is run right after, with the conf the trigger passed; runs that new data alone would
start but that skip themselves (train_model once a champion exists) are not started. A canary's deploy_model
runs in its own process (`airflow dags test`), because its sensor waits while the days go on. dag.test()
rewrites every DAG to the database on each call; the driver does that once (the files do not change).
Airflow's output goes to $MLOPS_HOME/logs/demo/airflow.log; the timeline and the Slack messages are printed.

Any window inside 2013 (the reference data) ends with the timeline and the Slack summary, whatever still runs
at its end: a canary still waiting for evidence is given `--canary-wait` seconds, then its process group is
stopped (SIGTERM, SIGKILL after a grace period) and the timeline says so; each stage a rollout enters is a line
of the timeline. The settings are a copy of include/config/ under $MLOPS_HOME (MLOPS_CONFIG_DIR) whose ramp
stages wait for requests, not hours (a replayed day lasts seconds). `--early-canary` makes a canary come within
the first days (thresholds forced in that copy).

    python scripts/demo.py [--start 2013-01-01] [--end 2013-06-21] [--fast] [--early-canary]
                           [--canary-wait 30] [--stop-grace 15]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLACK_MARK = "[slack: not configured, message logged instead]"
STOP_GRACE_S = 15.0  # how long a process group has after SIGTERM before it is killed

# --early-canary: the settings that make a canary start within the first days (and keep it waiting)
EARLY_CANARY = {
    "monitoring.yaml": {"numeric": {"ks": 0.0}, "min_drifted_features": 1, "consecutive_days": 1, "cooldown_days": 0},
    "gate.yaml": {"min_auc": 0.0, "max_auc_drop": 1.0, "max_ece": 1.0, "max_slice_auc_drop": 1.0},
}
# a replayed day lasts seconds, not hours: the demo's ramp stages wait for requests (a day is about 18 batches
# of 50 flights), never for hours
DEMO_RAMP = {
    "deploy.yaml": {
        "stages": [
            {"share": 0.0, "min_hours": 0, "min_requests": 5},
            {"share": 0.25, "min_hours": 0, "min_requests": 5},
            {"share": 1.0, "min_hours": 0, "min_requests": 5},
        ],
        "limits": {"min_rescored": 50},
    }
}
EARLY_CANARY_MIN_DAYS = 3  # curated days before the first model (train_model's form allows no fewer)


def stop_group(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> str:
    """Stops a process started with ``start_new_session=True`` and everything in its process group: SIGTERM, then
    SIGKILL for whatever is left after ``grace_s``. Returns what it took ("ended", "stopped" or "killed"); never
    raises ``subprocess.TimeoutExpired``."""

    def signal_group(sig) -> bool:
        try:
            os.killpg(proc.pid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    if proc.poll() is not None and not signal_group(0):
        return "ended"
    how = "stopped"
    signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while proc.poll() is None or _group_alive(proc.pid):
        if time.monotonic() > deadline:  # ignored SIGTERM (or left a child that did)
            how = "killed"
            signal_group(signal.SIGKILL)
            break
        time.sleep(0.2)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:  # unkillable (stuck in the kernel): reported, never raised
        return "left running"
    deadline = time.monotonic() + grace_s
    while _group_alive(proc.pid):  # the leader's children die a moment after it
        if time.monotonic() > deadline:
            return "left running"
        time.sleep(0.1)
    return how


def _group_alive(pgid: int) -> bool:
    """Whether any process but a zombie is in the process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def source_window(start: str, end: str | None, fast: bool) -> list[dt.date]:
    """The replay's days, inside the sources' declared days (2013 for the flights); ValueError naming the option
    otherwise."""
    from include.mlops.simulate.plan import replayed

    source = replayed()

    def day(option: str, value: str) -> dt.date:
        try:
            d = dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None
        if (source.first and d < source.first) or (source.last and d > source.last):
            raise ValueError(
                f"{option} {value} is outside the source data: the replay's window must lie inside {source.days}"
            )
        return d

    first = day("--start", start)
    last = first + dt.timedelta(days=41) if fast else day("--end", end)
    if fast and source.last:
        last = min(last, source.last)
    if last < first:
        raise ValueError(f"--end {last} is before --start {first}")
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def demo_config(home: Path, early: bool) -> Path:
    """A copy of the settings files under ``home`` with ``DEMO_RAMP``'s values, and ``EARLY_CANARY``'s when
    ``early`` (for MLOPS_CONFIG_DIR)."""
    import shutil

    import yaml

    from include.mlops.core.config import config_dir

    out = home / "demo-config"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(config_dir(), out)
    for name, values in [*DEMO_RAMP.items(), *(EARLY_CANARY.items() if early else [])]:
        data = yaml.safe_load((out / name).read_text()) or {}
        for k, v in values.items():
            data[k] = (data.get(k) or {}) | v if isinstance(v, dict) else v
        (out / name).write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def configure_env() -> None:
    """Before Airflow is imported: the project's layout, and a replay's short waits."""
    env = os.environ
    env.setdefault("MLOPS_HOME", str(ROOT / ".mlops"))
    env.setdefault("AIRFLOW_HOME", str(Path(env["MLOPS_HOME"]) / "airflow"))
    env.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
    env.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
    env.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    # the canary's process and this one share the SQLite database: wait for its lock instead of failing
    env.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS", "mlops_airflow.blocks.sqlite.CONNECT_ARGS")
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    env.setdefault("MLOPS_START_DATE", "2013-01-01")  # the replay's days are in the DAGs' window
    env.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    env.setdefault("MLOPS_SENSOR_POKE_S", "1")
    env.setdefault("MLOPS_RETRY_DELAY_S", "1")
    env.setdefault("MLOPS_DEPLOY_POKE_S", "2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    for p in (str(ROOT / "plugins"), str(ROOT)):
        if p not in sys.path:
            sys.path.insert(0, p)


def sync_dags_once() -> None:
    """dag.test() writes every DAG of the folder to the metadata database again on each call (so that the
    targets of TriggerDagRunOperator exist), which costs about 0.7 s a run here. The DAG files do not change
    during a replay: after the first write of a given set of files, the repeats are skipped."""
    from airflow.dag_processing import dagbag as module

    real = module.sync_bag_to_db
    done: set = set()

    def sync(dagbag, bundle_name, bundle_version, **kwargs):
        files = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in (ROOT / "dags").glob("*.py")))
        key = (bundle_name, tuple(sorted(dagbag.dags)), files)
        if key not in done:
            real(dagbag, bundle_name, bundle_version, **kwargs)
            done.add(key)

    module.sync_bag_to_db = sync


@dataclass
class Event:
    date: str
    kind: str
    version: str
    text: str


class Lifecycle:
    def __init__(self, logs: Path, workers: int, canary_wait_s: float = 30.0, stop_grace_s: float = STOP_GRACE_S):
        from include.mlops.core.config import Settings
        from include.mlops.core.lake import Lake

        self.settings = Settings.from_env()
        self.lake = Lake(self.settings.lake_url)
        self.logs = logs
        self.airflow_log = logs / "airflow.log"
        self.workers = workers
        self.canary_wait_s = canary_wait_s
        self.stop_grace_s = stop_grace_s
        self.events: list[Event] = []
        self.stages_seen: set[tuple[str, int]] = set()
        self.service: subprocess.Popen | None = None
        self.url = ""
        self.canary: tuple[subprocess.Popen, str, str] | None = None  # process, version, start date
        self.served = 0
        self.runs: dict[str, int] = {}
        self.seconds: dict[str, float] = {}  # wall time per DAG (and waiting for traffic)
        self.replayer = None  # the traffic process, once the service runs

    # -------------------------------------------------------------------------------------------- plumbing
    def event(self, date, kind: str, text: str, version: str | None = None) -> None:
        e = Event(str(date), kind, f"v{version}" if version else "", text)
        self.events.append(e)
        print(f"{e.date}  {e.kind:10s} {e.version:5s} {e.text}", flush=True)

    @contextlib.contextmanager
    def to_log(self):
        """Airflow's console output (task logs included) into airflow.log, not the terminal."""
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        fd = os.open(self.airflow_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for f in (fd, *saved):
                os.close(f)

    def run(self, dag_id: str, day: dt.date, conf: dict | None = None, hour: int = 0) -> dict[str, str]:
        """One real DAG run with dag.test(); returns {task_id: state} and the run's state under '_run'."""
        from airflow.dag_processing.dagbag import DagBag
        from airflow.models import TaskInstance
        from airflow.utils.session import create_session

        t0 = time.monotonic()
        n = self.runs[dag_id] = self.runs.get(dag_id, 0) + 1
        # data dates are midnight; triggered runs get a later, unique logical time on the same day
        when = (
            dt.datetime(day.year, day.month, day.day, hour, 0, n % 60, tzinfo=dt.UTC)
            if hour
            else dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
        )
        with self.to_log():
            print(f"\n===== {dag_id} {when.isoformat()} conf={json.dumps(conf or {})} =====", flush=True)
            file = "ingest.py" if dag_id.startswith("ingest_") else f"{dag_id}.py"  # ingest.py: one per data set
            dag = DagBag(dag_folder=str(ROOT / "dags" / file)).get_dag(dag_id)
            dr = dag.test(logical_date=when, run_conf=conf)
        with create_session() as s:
            tis = s.query(TaskInstance).filter_by(dag_id=dag_id, run_id=dr.run_id).all()
            states = {ti.task_id: str(ti.state) for ti in tis}
        self.seconds[dag_id] = self.seconds.get(dag_id, 0.0) + time.monotonic() - t0
        return states | {"_run": str(dr.state)}

    def queued(self, dag_id: str) -> list[dict]:
        """Confs of the runs a trigger queued for ``dag_id`` (taken: this driver runs them)."""
        from airflow.models import DagRun
        from airflow.utils.session import create_session
        from airflow.utils.state import DagRunState

        with create_session() as s:
            runs = s.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.state == DagRunState.QUEUED).all()
            confs = [dict(r.conf or {}) for r in runs]
            for r in runs:
                s.delete(r)
        return confs

    def champion(self) -> str | None:
        from include.mlops.core import registry

        return (registry.alias_version("champion", self.settings) or {}).get("version")

    # ------------------------------------------------------------------------------------------ the steps
    def ingest(self, day: dt.date, fault: str | None) -> bool:
        from include.mlops.core import layout
        from include.mlops.simulate.upstream import Upstream

        drops = Upstream(self.lake).publish_day(day, fault=fault, delay_s=4, failures=2)
        t0 = time.monotonic()
        states = self.run("ingest_flights", day)
        for drop in drops:
            drop.wait(5)
        quarantine = layout.quarantine("flights", day)
        if states["_run"] != "success" and self.lake.exists(quarantine, layout.QUARANTINE_REPORT):
            rules = self.lake.read_json(quarantine, layout.QUARANTINE_REPORT).get("failed_rules", [])
            self.event(
                day,
                "quarantine",
                f"{fault} drop rejected, kept in {self.lake.uri(quarantine)}: " + "; ".join(rules)[:140],
            )
            return False
        if fault:
            self.event(
                day,
                "ingest",
                f"{fault} drop: run {states['_run']} in {time.monotonic() - t0:.0f} s"
                + (
                    " (retried with backoff)"
                    if fault == "unavailable"
                    else " (the sensor waited for it)"
                    if fault == "late"
                    else ""
                ),
            )
        return states["_run"] == "success"

    def train(self, day: dt.date, conf: dict) -> None:
        from include.mlops.core import layout, registry

        before = {v["version"] for v in registry.versions(self.settings)}
        states = self.run("train_model", day, conf | {"workers": self.workers}, hour=6)
        if states.get("should_train") == "skipped" or states.get("build_training_set") in ("skipped", None):
            return
        new = [v for v in registry.versions(self.settings) if v["version"] not in before]
        if not new:
            self.event(
                day,
                "train",
                f"train_model {states['_run']}: no version registered "
                f"({ {k: v for k, v in states.items() if v != 'success'} })",
            )
            return
        v = new[-1]
        import mlflow

        r = mlflow.get_run(v["run_id"])
        m, t = r.data.metrics, r.data.tags
        self.event(
            day,
            "train",
            f"{t.get('reason')}: window {t.get('data_window')}, {r.data.params.get('workers')} "
            f"Horovod workers, {m.get('train_s', 0):.1f} s fit, test AUC {m.get('test_auc', 0):.3f},"
            f" data {t.get('data_fingerprint', '')[:10]}",
            v["version"],
        )
        folder = layout.gate(t.get("run_key"))
        if self.lake.exists(folder, layout.GATE_DECISION):
            d = self.lake.read_json(folder, layout.GATE_DECISION)
            cand = d["candidate"]
            vs = (
                f" vs champion v{d['champion_version']} AUC {d['champion']['auc']:.3f}"
                if d.get("champion")
                else " (first model)"
            )
            verdict = "passed: challenger" if d["passed"] else "FAILED (" + ", ".join(d["failed"]) + ")"
            self.event(
                day, "gate", f"{verdict}; AUC {cand['auc']:.3f}{vs} on {', '.join(d['holdout_days'])}", v["version"]
            )
        for c in self.queued("deploy_model"):
            self.deploy(day, c)

    def deploy(self, day: dt.date, conf: dict) -> None:
        from include.mlops.core import rollouts

        if self.champion() is None:
            states = self.run("deploy_model", day, conf, hour=7)
            self.event(
                day, "deploy", f"promoted directly (no champion yet): deploy_model {states['_run']}", self.champion()
            )
            self.start_service()
            return
        if self.canary is not None:
            self.event(day, "deploy", "a canary is already running: this version waits", conf.get("version"))
            return
        when = dt.datetime(day.year, day.month, day.day, 7, tzinfo=dt.UTC).isoformat()
        out = open(self.logs / f"deploy_model-v{conf['version']}.log", "w")
        # a process group of its own: stopped as a whole when the replay ends before the canary does
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "airflow"),
                "dags",
                "test",
                "deploy_model",
                when,
                "-c",
                json.dumps(conf),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ,
            start_new_session=True,
        )
        self.canary = (proc, str(conf["version"]), day.isoformat())
        for _ in range(240):  # the canary is live once the rollout is written and the service routes to it
            r = rollouts.current(self.lake) or {}
            if r.get("status") == "canary" and str(r.get("version")) == str(conf["version"]) or proc.poll() is not None:
                break
            time.sleep(0.5)
        r = rollouts.current(self.lake) or {}
        self.event(
            day,
            "canary",
            f"started at the {'shadow' if not r.get('canary_share') else format(r['canary_share'], '.0%')} stage "
            f"against champion "
            f"v{r.get('champion')} (deploy_model in its own process)",
            conf["version"],
        )

    def stage_events(self, day: dt.date, version: str) -> None:
        """A timeline line for each stage the rollout of ``version`` entered since the last look."""
        from include.mlops.core import rollouts

        r = rollouts.current(self.lake) or {}
        if str(r.get("version")) != version:
            return
        for h in (r.get("history") or [])[1:]:
            key = (version, h["stage"])
            if key not in self.stages_seen:
                self.stages_seen.add(key)
                name = "shadow" if not h["share"] else f"{h['share']:.0%} of flights"
                self.event(
                    day,
                    "stage",
                    f"the rollout advanced to {name}: {r['history'][h['stage'] - 1].get('why', '')}"[:300],
                    version,
                )

    def canary_done(self, day: dt.date, wait: bool = False) -> None:
        if self.canary is None:
            return
        proc, version, started = self.canary
        if wait:
            try:
                proc.wait(timeout=self.canary_wait_s)
            except subprocess.TimeoutExpired:
                how = stop_group(proc, self.stop_grace_s)
                self.canary = None
                self.event(
                    day,
                    "canary",
                    f"still waiting for evidence when the replay ended (started {started}, "
                    f"waited {self.canary_wait_s:.0f} s more): stopped, "
                    + {
                        "stopped": "its process group ended on SIGTERM",
                        "killed": f"its process group killed (SIGKILL) after ignoring SIGTERM "
                        f"for {self.stop_grace_s:.0f} s",
                        "ended": "its process had just ended",
                    }.get(how, f"its process group {how}")
                    + f"; no decision, the rollout stays a canary; log "
                    f"{self.logs / f'deploy_model-v{version}.log'}",
                    version,
                )
                return
        self.stage_events(day, version)
        if proc.poll() is None:
            return
        self.canary = None

        from include.mlops.core import layout
        from include.mlops.deploy import canary

        if self.lake.exists(*layout.canary_evidence(version)):
            ev = self.lake.read_json(*layout.canary_evidence(version))
            self.event(day, "decision", canary.describe(ev), version)
        else:
            self.event(
                day,
                "decision",
                f"deploy_model ended (rc {proc.returncode}) without a decision; see "
                f"{self.logs / f'deploy_model-v{version}.log'}",
                version,
            )
        self.event(day, "champion", f"champion is v{self.champion()} (canary started {started})", self.champion())

    def monitor(self, day: dt.date) -> None:
        from include.mlops.core import layout

        states = self.run("monitor_model", day)
        folder = layout.monitoring(day)
        if not self.lake.exists(folder, layout.MONITORING_REPORT):
            return
        r = self.lake.read_json(folder, layout.MONITORING_REPORT)
        if states.get("trigger_train_model") == "success":
            d = next((t for t in reversed(self.lake.read_json(*layout.triggers())) if t["date"] == day.isoformat()), {})
            top = sorted((f for f in r["features"] if f["drifted"]), key=lambda f: -(f.get("ks") or 0))[:4]
            detail = ", ".join(f"{f['feature']} KS {f.get('ks') or 0:.2f} PSI {f.get('psi') or 0:.2f}" for f in top)
            self.event(
                day,
                "drift",
                d.get("reason", "") + (f"; {detail}" if detail else "") + f"; report {r['report']}",
                r["champion"],
            )
            for conf in self.queued("train_model"):
                self.train(day, conf)
        elif day.weekday() == 6:  # a weekly line of what monitoring sees
            p = r["performance"]["window"]
            auc = f"{p['auc']:.3f}" if p.get("auc") is not None else "n/a"
            up = [k for k, v in r["signals"].items() if v]
            self.event(
                day,
                "monitor",
                f"{r['days']} days to {day}: live AUC {auc} on {p['rows']} labelled predictions "
                f"(validation {r['performance']['reference_auc'] or 0:.3f}); drifted: "
                f"{', '.join(r['drifted']) or 'none'}; signals up: {', '.join(up) or 'none'}",
                r["champion"],
            )

    def start_service(self) -> None:
        import httpx

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        os.environ["MLOPS_SERVE_URL"] = self.url  # the rollout's stages and monitoring read its /metrics
        if not (os.environ.get("MLOPS_SERVE_TOKEN") or os.environ.get("MLOPS_SERVE_TOKEN_FILE")):
            import secrets  # as in production, /predict requires a token; the replay (a child) reads it too

            os.environ["MLOPS_SERVE_TOKEN"] = secrets.token_urlsafe(24)
        env = os.environ | {"MLOPS_SERVE_PORT": str(port), "MLOPS_SERVE_REFRESH_S": "1", "MLOPS_SERVE_FLUSH_S": "3"}
        self.service = subprocess.Popen(
            [sys.executable, "-m", "include.mlops.serve.app"],
            env=env,
            cwd=ROOT,
            stdout=open(self.logs / "serve.log", "w"),
            stderr=subprocess.STDOUT,
        )
        for _ in range(240):
            try:
                if httpx.get(self.url + "/health").json().get("champion"):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)

    def traffic(self, day: dt.date) -> bool:
        """Replay the day's flights as prediction requests, in a process of its own (so that it does not
        compete with the Airflow runs for this interpreter), while the previous day's runs finish: the
        predictions are made before the day's outcomes are ingested. ``traffic_done`` waits for it."""
        if self.service is None:
            return False
        if self.replayer is None:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            self.jobs, self.results = ctx.Queue(), ctx.Queue()
            self.replayer = ctx.Process(target=replay_worker, args=(self.url, self.jobs, self.results), daemon=True)
            self.replayer.start()
        self.jobs.put(day.isoformat())
        return True

    def traffic_done(self) -> None:
        day, flights, requests, errors = self.results.get(timeout=600)
        self.served += flights
        if errors:
            self.event(day, "traffic", f"{errors} request(s) failed out of {requests}")

    def stop(self) -> None:
        if self.replayer is not None:
            self.jobs.put(None)
            self.replayer.join(30)
        if self.canary is not None:  # the replay ended early (an error, Ctrl-C): its whole process group goes
            proc, version, started = self.canary
            self.canary = None
            how = stop_group(proc, self.stop_grace_s)
            self.event(
                self.events[-1].date if self.events else started,
                "canary",
                f"the replay ended early: deploy_model of the canary started {started} {how}",
                version,
            )
        if self.service is not None and self.service.poll() is None:
            self.service.terminate()
            try:
                self.service.wait(15)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait(15)


def replay_worker(url: str, jobs, results) -> None:
    """The traffic process: replays each date it is given against the service."""
    from include.mlops.simulate.traffic import replay

    for day in iter(jobs.get, None):
        r = replay(day, url)
        results.put((day, r.flights, r.requests, r.errors))


def slack_messages(log: Path) -> list[str]:
    if not log.exists():
        return []
    out = []
    for block in log.read_text(errors="replace").split(SLACK_MARK)[1:]:
        line = next((ln.strip() for ln in block.splitlines() if ln.strip().startswith("[")), "")
        if line:
            out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", default="2013-01-01")
    ap.add_argument("--end", default="2013-06-21")
    ap.add_argument("--fast", action="store_true", help="a quick look: six weeks from --start")
    ap.add_argument("--workers", type=int, default=2, help="Horovod workers for train_model")
    ap.add_argument(
        "--early-canary",
        action="store_true",
        help="a canary within the first days: the first model after 3 curated days, drift that fires "
        "at once, a gate that passes (a copy of include/config/ under $MLOPS_HOME)",
    )
    ap.add_argument(
        "--no-faults",
        action="store_true",
        help="good drops only (to compare with the scheduler's replay, which injects none)",
    )
    ap.add_argument(
        "--canary-wait",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a canary still running at the end is given to decide on the evidence it has (it "
        "looks every MLOPS_DEPLOY_POKE_S, 2 s here) before it is stopped (default 30)",
    )
    ap.add_argument(
        "--stop-grace",
        type=float,
        default=STOP_GRACE_S,
        metavar="S",
        help=f"seconds a stopped canary's process group has after SIGTERM before SIGKILL (default {STOP_GRACE_S:.0f})",
    )
    args = ap.parse_args(argv)
    for option, value in (("--canary-wait", args.canary_wait), ("--stop-grace", args.stop_grace)):
        if not value >= 0:
            ap.error(f"{option} {value}: a number of seconds, 0 or more")
    configure_env()
    try:
        days = source_window(args.start, args.end, args.fast)
    except ValueError as exc:
        ap.error(str(exc))
    os.environ["MLOPS_CONFIG_DIR"] = str(demo_config(Path(os.environ["MLOPS_HOME"]), args.early_canary))
    if args.early_canary:
        os.environ["MLOPS_TRAIN_MIN_DAYS"] = str(EARLY_CANARY_MIN_DAYS)
    import logging

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    sync_dags_once()

    start = days[0]
    faults = {
        start + dt.timedelta(days=4): "unavailable",
        start + dt.timedelta(days=8): "duplicates",
        start + dt.timedelta(days=11): "late",
        start + dt.timedelta(days=100): "wrong_types",
    }
    if args.no_faults:
        faults = {}

    logs = Path(os.environ["MLOPS_HOME"]) / "logs" / "demo"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "airflow.log").write_text("")
    life = Lifecycle(logs, args.workers, args.canary_wait, args.stop_grace)
    print(
        f"MLOPS_HOME={os.environ['MLOPS_HOME']}\nlake: {life.lake.url}\nAirflow output: {life.airflow_log}\n"
        f"replaying {days[0]} .. {days[-1]} ({len(days)} days)\n"
    )
    print(f"{'date':10s}  {'event':10s} {'model':5s} details", flush=True)
    t_all = time.monotonic()
    curated = 0
    rc = 0
    try:
        pending = False
        for day in days:
            pending = pending or life.traffic(day)
            if pending:
                t0 = time.monotonic()
                life.traffic_done()
                life.seconds["waiting for traffic"] = life.seconds.get("waiting for traffic", 0) + time.monotonic() - t0
            ok = life.ingest(day, faults.get(day))
            curated += ok
            if ok and life.champion() is None:  # the curated Asset starts train_model until a champion exists
                life.train(day, {"reason": "first model (new curated data)"})
            pending = life.traffic(day + dt.timedelta(days=1)) if day < days[-1] else False
            if life.champion() is not None:
                life.monitor(day)
            life.canary_done(day)
        if pending:
            life.traffic_done()
        life.canary_done(days[-1], wait=True)
    except Exception as exc:  # the timeline and the Slack summary still come, with what went wrong
        import traceback

        with open(life.airflow_log, "a") as f:
            traceback.print_exc(file=f)
        life.event(
            life.events[-1].date if life.events else days[0],
            "error",
            f"the replay stopped: {type(exc).__name__}: {str(exc)[:200]} (traceback in {life.airflow_log})",
        )
        rc = 1
    finally:
        life.stop()

    from include.mlops.core import layout, registry

    took = time.monotonic() - t_all
    print(f"\n== Timeline ({len(days)} days in {took / 60:.1f} min) " + "=" * 60)
    print(f"{'date':10s}  {'event':10s} {'model':5s} details")
    for e in life.events:
        print(f"{e.date}  {e.kind:10s} {e.version:5s} {e.text}")
    versions = registry.versions(life.settings)
    print(
        "\nwall time: "
        + ", ".join(
            f"{k} {v:.0f} s ({life.runs.get(k, '')}{' runs' if k in life.runs else ''})"
            for k, v in sorted(life.seconds.items(), key=lambda kv: -kv[1])
        )
    )
    print(
        f"\n{curated} of {len(days)} days curated; {len(versions)} model version(s) registered; champion "
        f"v{life.champion()}; {life.served} flights predicted over HTTP and logged to "
        f"{life.lake.uri(layout.prediction_log())}"
    )
    print(
        f"reports: {life.lake.uri(layout.reports())} (gate/, monitoring/, deployments/); MLflow: "
        f".venv/bin/mlflow ui --backend-store-uri {registry.tracking_uri(life.settings)}"
    )
    from include.mlops.core import audit

    trail = audit.verify(life.lake)  # every decision the run made, chained; make audit-verify checks it again
    print(
        f"audit trail: {trail['records']} record(s) in {trail['trail']}: "
        + ("chain verified against the registry's head" if trail["ok"] else "PROBLEMS: " + "; ".join(trail["problems"]))
    )
    rc = rc or (0 if trail["ok"] else 1)
    msgs = slack_messages(life.airflow_log) + sum(
        (slack_messages(p) for p in sorted(logs.glob("deploy_model-*.log"))), []
    )
    print(
        f"\nSlack messages ({len(msgs)}; no slack_default connection, so they went to the task logs marked "
        f"'{SLACK_MARK}'):"
    )
    for m in msgs:
        print(f"  {m}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
