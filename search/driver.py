"""The search driver: the single owner of the Optuna study (ask / tell), dispatching evaluations as
Ray tasks, `workers` at a time, and recording every finished trial at once in the study storage and
MLflow, so that a crash or Ctrl-C loses no completed trial.

What survives what:
- a trial that raises (NaN loss, a bug in a block): that trial fails, with the error in its MLflow
  run, and the search goes on (until more than `max_failures` have failed);
- a worker that dies (killed, out of memory, node lost): the trial fails with the reason and the
  same network is queued again as a new trial, up to `retries` times;
- the driver itself killed: running the same command again resumes; trials it left running are
  failed, their MLflow runs marked KILLED, and their networks queued again;
- the same network proposed twice: it is not trained again; the earlier result is reused.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import optuna
import pandas as pd
from optuna.trial import TrialState

from bitnas.errors import RunFailed
from bitnas.evaluators import (DataOptions, EarlyStoppingRule, EvalRequest, LatencyConfig, Teacher, TrainingConfig,
                               load_dataset, load_or_train_teacher)
from bitnas.evaluators.proxies import ProxyPrefilter

from .config import ConfigError, SearchConfig
from .interrupts import Interrupts
from .lease import DriverLease
from .objectives import Objective, objectives_for
from .ray_runtime import RayRuntime
from .references import evaluate_references
from .report import format_table, reference_lines
from .samplers import make_sampler
from .storage import describe_storage, open_storage, study_names
from .tracking import StudyTracker, find_trial_run_id, ui_command
from .trial_records import Reusable, TrialInFlight, TrialRecorder
from .views import StudyViews

# The driver prints its own progress; Optuna's per-trial log lines would only repeat it.
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


LATENCY_TARGETS = {
    "cpu": "this CPU with the packed binary engine (XNOR-popcount; full-precision layers in torch)",
    "torch-cpu": "torch on this CPU (binary layers simulated in fp32)",
    "torch-cuda": "torch on CUDA (binary layers simulated in fp32)",
    "onnxruntime": "onnxruntime on this CPU (binary layers simulated in fp32)",
}


class SearchAborted(RunFailed):
    """Too many trials failed; the message carries the last error."""


@dataclass
class SearchOutcome:
    study: str
    completed: int
    failed_this_run: int
    interrupted: bool
    frame: pd.DataFrame
    hypervolume: float
    seconds: float
    objectives: list[Objective] = field(default_factory=list)
    storage: str = ""
    references: pd.DataFrame = field(default_factory=pd.DataFrame)


def _format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _open_study(config: SearchConfig, objectives: list[Objective], geometry: dict) -> optuna.Study:
    storage = open_storage(config.results_dir, config.storage)
    sampler = make_sampler(config.sampler, config.seed)
    if config.study in study_names(storage):
        study = optuna.load_study(study_name=config.study, storage=storage, sampler=sampler)
        recorded = study.user_attrs.get("objectives")
        if recorded != list(config.objectives):
            raise ConfigError(f"study {config.study!r} was created with objectives {recorded}, not "
                              f"{list(config.objectives)}; choose another --study name")
        if study.user_attrs.get("dataset") != config.dataset:
            raise ConfigError(f"study {config.study!r} searches dataset {study.user_attrs.get('dataset')!r}, "
                              f"not {config.dataset!r}; choose another --study name")
        return study
    study = optuna.create_study(study_name=config.study, storage=storage, sampler=sampler,
                                directions=[o.direction for o in objectives])
    study.set_metric_names(list(config.objectives))
    study.set_user_attr("objectives", list(config.objectives))
    study.set_user_attr("dataset", config.dataset)
    study.set_user_attr("data_seed", config.seed)
    study.set_user_attr("geometry", geometry)
    study.set_user_attr("config", config.model_dump(mode="json"))
    return study


def _recover_interrupted_trials(study: optuna.Study, tracker: StudyTracker, recorder: TrialRecorder,
                                out: Callable[[str], None]) -> None:
    """Trials left RUNNING by a driver that died can never report back: fail them, mark their
    MLflow runs KILLED, and queue their networks again (it was not the network's fault)."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        if find_trial_run_id(tracker.client, tracker.experiment_id, trial.number):
            tracker.finish_trial(trial.number, status="KILLED", tags={"bitnas.error": "the search driver stopped"})
        if trial.params:
            recorder.requeue(trial.params, retry_of=trial.number, attempt=int(trial.user_attrs.get("attempt", 1)) + 1)
    if stale:
        out(f"an earlier search of this study stopped with {len(stale)} trial(s) running: "
            f"marked them failed and queued their networks again")


def _data_options(config: SearchConfig) -> DataOptions:
    return DataOptions(path=config.data_dir, image_size=config.data.image_size, normalise=config.data.normalise)


_TEACHERS: dict[tuple, Teacher] = {}


def _teacher(config: SearchConfig) -> Teacher | None:
    """The distillation teacher, trained once per (dataset, seed) and cached under <results>/teachers/;
    held here so that every request of this driver carries the same one."""
    if not config.training.distill:
        return None
    key = (str(config.results_dir), config.dataset, config.seed, config.training.teacher_epochs, _data_options(config))
    if key not in _TEACHERS:
        _TEACHERS[key] = load_or_train_teacher(config.results_dir, config.dataset, config.seed,
                                               epochs=config.training.teacher_epochs, options=_data_options(config))
    return _TEACHERS[key]


def _prefilter(config: SearchConfig, proxy_scores: list[float]) -> ProxyPrefilter | None:
    """With `proxies.prefilter`: skip networks whose proxy is below the `bottom_fraction` quantile of
    the scores so far (none skipped until `min_trials` have been scored)."""
    proxies = config.proxies
    if not proxies.prefilter:
        return None
    threshold = None
    if len(proxy_scores) >= proxies.min_trials:
        ordered = sorted(proxy_scores)
        threshold = ordered[min(len(ordered) - 1, int(proxies.bottom_fraction * len(ordered)))]
    return ProxyPrefilter(proxy=proxies.proxy, threshold=threshold)


def _request(config: SearchConfig, trial_number: int, peer_curves: tuple[tuple[float, ...], ...] = (),
             proxy_scores: list[float] | None = None) -> EvalRequest:
    """What one evaluation needs. `peer_curves`: per-epoch validation accuracy of the trials finished
    so far, from which the worker decides to stop early (it never talks to the study);
    `proxy_scores`: earlier trials' zero-cost proxy, for the optional pre-filter."""
    early = config.early_stopping
    return EvalRequest(
        prefilter=_prefilter(config, proxy_scores or []),
        dataset=config.dataset, data_seed=config.seed, seed=config.seed * 100_003 + trial_number,
        data=_data_options(config), teacher=_teacher(config), peer_curves=peer_curves,
        early_stopping=EarlyStoppingRule(enabled=early.enabled, grace_epochs=early.grace_epochs,
                                         min_trials=early.min_trials, percentile=early.percentile)
        if early.enabled and peer_curves else None,
        training=TrainingConfig(**config.training.model_dump()),
        # where the measurement runs (resource, timeout) is the driver's business, not the worker's
        latency=LatencyConfig(**config.latency.model_dump(exclude={"resource", "timeout_s"})),
        energy_profile=config.energy_profile, energy_meter=config.energy_meter,
    )


class _SearchLoop:
    """One run of the driver: keeps `workers` evaluations in flight until the study has
    `trials` completed trials."""

    def __init__(self, config: SearchConfig, study: optuna.Study, recorder: TrialRecorder, views: StudyViews,
                 lease: DriverLease, geometry: dict, out: Callable[[str], None]):
        self.config, self.study, self.recorder, self.views = config, study, recorder, views
        self.lease, self.geometry, self.out = lease, geometry, out
        self.pending: dict = {}                        # Ray ref -> TrialInFlight
        self.waiting: dict[str, list[TrialInFlight]] = {}  # genotype hash -> trials waiting on an identical one
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        self.known = {t.user_attrs["genotype_hash"]: Reusable(t.number, dict(t.user_attrs)) for t in completed
                      if "genotype_hash" in t.user_attrs and "duplicate_of" not in t.user_attrs}
        # Learning curves of finished trials, sent with each request for early stopping.
        self.curves = [tuple(t.user_attrs["epoch_val_accuracy"]) for t in completed
                       if t.user_attrs.get("epoch_val_accuracy") and "duplicate_of" not in t.user_attrs]
        self.proxy_key = f"proxy_{config.proxies.proxy}"
        self.proxy_scores = [t.user_attrs["metrics"][self.proxy_key] for t in completed
                             if self.proxy_key in t.user_attrs.get("metrics", {}) and "duplicate_of" not in t.user_attrs]
        # Counted here rather than read back from the storage each time: the driver is the study's
        # only writer (the lease sees to that), and a database round trip per step adds up.
        self.completed_before = len(completed)
        self.failures, self.finished, self.last_error = 0, 0, ""
        self.started = time.monotonic()
        self.frame = pd.DataFrame()
        self.unannounced: list[tuple[int, int, str, str]] = []  # (completed, trial, objectives, note)

    def completed(self) -> int:
        return self.completed_before + self.finished

    def in_flight(self) -> int:
        return len(self.pending) + sum(len(w) for w in self.waiting.values())

    def run(self, runtime: RayRuntime, remote_evaluate, interrupts: Interrupts) -> None:
        ready: list = []
        while True:
            self.lease.refresh()
            if self.completed() >= self.config.trials and not self.in_flight():
                self._announce()
                return
            # Workers whose trial just finished get their next one before the driver records the
            # finished ones (MLflow artefacts, the study's tell) and refreshes the views: a worker
            # never waits for the driver's bookkeeping. The finished trials still count as in
            # flight here, so the trial budget holds and an identical network waits for their result.
            self._fill(remote_evaluate, interrupts, finishing=len(ready))
            for ref in ready:
                with interrupts.shielded():  # recorded in storage and MLflow, or still pending
                    self._collect(runtime, remote_evaluate, ref)
            self._announce()
            ready, _ = runtime.wait(list(self.pending), timeout=1.0)

    def _fill(self, remote_evaluate, interrupts: Interrupts, finishing: int) -> None:
        """Ask and dispatch trials while a worker is free and the budget allows."""
        while len(self.pending) - finishing < self.config.workers and self.completed() + self.in_flight() < self.config.trials:
            with interrupts.shielded():  # asked and dispatched (or resolved), or not asked at all
                self._ask_and_dispatch(remote_evaluate)

    def _ask_and_dispatch(self, remote_evaluate) -> None:
        trial = self.study.ask()
        params = {name: trial.suggest_categorical(name, choices) for name, choices in self.config.space.choices().items()}
        genotype = self.config.space.decode(params, **self.geometry)
        item = TrialInFlight(trial, genotype, params, time.monotonic(), int(trial.user_attrs.get("attempt", 1)))
        self.recorder.start(item)
        key = genotype.hash()
        if key in self.known:
            self.recorder.duplicate(item, self.known[key])
            self._report(item, self.known[key].user_attrs["metrics"], note=f"same network as trial {self.known[key].number}")
        elif any(p.genotype.hash() == key for p in self.pending.values()):
            self.waiting.setdefault(key, []).append(item)
        else:
            self._dispatch(remote_evaluate, item)

    def _dispatch(self, remote_evaluate, item: TrialInFlight) -> None:
        request = _request(self.config, item.trial.number, tuple(self.curves), self.proxy_scores)
        self.pending[remote_evaluate.remote(item.genotype.to_json(), request, self.config.plugins)] = item

    def _collect(self, runtime: RayRuntime, remote_evaluate, ref) -> None:
        item = self.pending.pop(ref)
        key = item.genotype.hash()
        try:
            result = runtime.get(ref)
        except Exception as error:  # noqa: BLE001 - a failure of one trial fails that trial only
            self._fail(runtime, item, error)
            waiters = self.waiting.pop(key, [])
            if waiters:  # the identical network still has to be evaluated: the first waiter does it
                first, rest = waiters[0], waiters[1:]
                first.started = time.monotonic()
                self._dispatch(remote_evaluate, first)
                if rest:
                    self.waiting[key] = rest
            return
        self.known[key] = self.recorder.success(item, result)
        if result.epoch_val_accuracy:
            self.curves.append(tuple(result.epoch_val_accuracy))
        if self.proxy_key in result.metrics:
            self.proxy_scores.append(result.metrics[self.proxy_key])
        self._report(item, result.metrics)
        for waiter in self.waiting.pop(key, []):
            self.recorder.duplicate(waiter, self.known[key])
            self._report(waiter, result.metrics, note=f"same network as trial {item.trial.number}")

    def _fail(self, runtime: RayRuntime, item: TrialInFlight, error: Exception) -> None:
        self.failures += 1
        self.last_error = runtime.describe_error(error)
        self.recorder.failure(item, self.last_error)
        retry = runtime.worker_lost(error) and item.attempt <= self.config.retries
        if retry:
            self.recorder.requeue(item.params, retry_of=item.trial.number, attempt=item.attempt + 1)
        self.out(f"trial {item.trial.number} failed: {self.last_error}"
                 + (f" (worker lost; running it again, attempt {item.attempt + 1})" if retry else ""))
        if self.failures > self.config.max_failures:
            raise SearchAborted(f"{self.failures} trials failed (max_failures={self.config.max_failures}); "
                                f"last error: {self.last_error}")

    def _report(self, item: TrialInFlight, metrics: dict, note: str = "") -> None:
        """Count a recorded trial; its progress line waits for the next `_announce`."""
        self.finished += 1
        shown = "  ".join(f"{o.name} {v:.4g}" for o, v in zip(self.recorder.objectives, self.recorder.values(metrics)))
        self.unannounced.append((self.completed(), item.trial.number, shown,
                                 note or f"{time.monotonic() - item.started:.1f}s"))

    def _announce(self) -> None:
        """Refresh the study's views once for every trial recorded since the last call, and print
        a progress line for each."""
        if not self.unannounced:
            return
        self.frame, _ = self.views.refresh()
        elapsed = time.monotonic() - self.started
        width = len(str(self.config.trials))
        for done, number, shown, note in self.unannounced:
            eta = elapsed / self.finished * max(0, self.config.trials - done)
            self.out(f"[{done:>{width}}/{self.config.trials}] trial {number:<3} {shown}  ({note})  "
                     f"pareto {int(self.frame['pareto'].sum())}  elapsed {_format_duration(elapsed)}  "
                     f"eta {_format_duration(eta)}")
        self.unannounced.clear()

    def abandon(self, runtime: RayRuntime) -> None:
        """Trials still in flight can never report back to this driver: fail them, never leave them RUNNING."""
        for ref, item in self.pending.items():
            runtime.cancel(ref)
            self.recorder.failure(item, "interrupted: the search was stopped", status="KILLED")
        for waiters in self.waiting.values():
            for item in waiters:
                self.recorder.failure(item, "interrupted: the search was stopped", status="KILLED")
        self.pending.clear()
        self.waiting.clear()


def _start_ray(config: SearchConfig, tracker: StudyTracker, out: Callable[[str], None]) -> RayRuntime:
    try:
        return RayRuntime.start(workers=config.workers, address=config.ray.address,
                                num_cpus=config.ray.num_cpus_per_trial, num_gpus=config.ray.num_gpus_per_trial,
                                resources=config.ray.resources, latency_resource=config.latency.resource, out=out)
    except BaseException:
        tracker.finish("FAILED")
        raise


def run_search(config: SearchConfig, out: Callable[[str], None] = print) -> SearchOutcome:
    started = time.monotonic()
    objectives = objectives_for(config.objectives)
    data = load_dataset(config.dataset, config.seed, _data_options(config))
    geometry = {"input_size": data.input_size, "in_channels": data.in_channels, "num_classes": data.num_classes}
    config.results_dir.mkdir(parents=True, exist_ok=True)
    study = _open_study(config, objectives, geometry)
    lease = DriverLease(study)
    lease.acquire()
    storage_name = describe_storage(config.results_dir, config.storage)
    try:
        tracker = StudyTracker(config.results_dir, config.study, config.model_dump(mode="json"), list(config.objectives))
        tracker.set_study_tags({"bitnas.sampler": config.sampler, "bitnas.dataset": config.dataset,
                                "bitnas.trials_target": str(config.trials), "bitnas.target": config.latency.target,
                                "bitnas.storage": storage_name})
        recorder = TrialRecorder(study, tracker, objectives, config)
        views = StudyViews(study, tracker, objectives, config)
        _recover_interrupted_trials(study, tracker, recorder, out)
        loop = _SearchLoop(config, study, recorder, views, lease, geometry, out)
        out(f"study {config.study!r} in {storage_name}: {loop.completed_before}/{config.trials} trials completed; "
            f"space of {config.space.size():,} genotypes; objectives "
            f"{', '.join(f'{o.name} ({o.direction[:3]})' for o in objectives)}")
        if loop.completed_before >= config.trials:
            out(f"nothing to do: the study already has {loop.completed_before} completed trials (raise --trials to continue)")
            frame, volume = views.refresh(final=True)
            tracker.finish()
            return SearchOutcome(config.study, loop.completed_before, 0, False, frame, volume,
                                 time.monotonic() - started, objectives, storage_name, views.references)
        interrupted = False
        runtime = _start_ray(config, tracker, out)
        remote_evaluate = runtime.remote_evaluate(config.latency.timeout_s)
        views.refresh()
        try:
            with Interrupts() as interrupts:
                evaluate_references(config.references, geometry, study, tracker, runtime, remote_evaluate,
                                    lambda offset: _request(config, offset), config.plugins, interrupts, out)
                views.refresh(final=True)
                loop.started = time.monotonic()  # elapsed and ETA count the trials, not the references
                loop.run(runtime, remote_evaluate, interrupts)
        except KeyboardInterrupt:
            interrupted = True
            out(f"\ninterrupted: stopping {loop.in_flight()} running trial(s); every completed trial is kept")
        finally:
            loop.abandon(runtime)
            runtime.shutdown()
            frame, volume = views.refresh(final=True)
            aborted = loop.failures > config.max_failures
            tracker.finish("KILLED" if interrupted else ("FAILED" if aborted else "FINISHED"))
        return SearchOutcome(config.study, loop.completed(), loop.failures, interrupted, frame, volume,
                             time.monotonic() - started, objectives, storage_name, views.references)
    finally:
        lease.release()


def summary_text(outcome: SearchOutcome, config: SearchConfig) -> str:
    results = config.results_dir
    storage_flag = f" --storage {outcome.storage}" if config.storage else ""
    lines = [
        "",
        f"Pareto front of study {outcome.study!r} ({int(outcome.frame['pareto'].sum())} of {len(outcome.frame)} "
        f"completed trials; hypervolume {outcome.hypervolume:.4g}; {_format_duration(outcome.seconds)} wall time):",
        format_table(outcome.frame, outcome.objectives),
        "",
        *reference_lines(outcome.references, outcome.objectives),
        f"latency: {LATENCY_TARGETS.get(config.latency.target, config.latency.target)}, batch 1, "
        f"{config.latency.threads} thread(s); energy: analytic, Horowitz 45 nm MACs",
        (f"open the MLflow UI:  {config.tracking_uri} (the tracking server this search logged to)"
         if config.tracking_uri else f"open the MLflow UI:  {ui_command(results)}"),
        f"export the front:    bitnas export --study {outcome.study} --results {results}{storage_flag}",
    ]
    return "\n".join(lines)
