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

With `schedule: asha` (search/scheduling.py says how rungs map to trials), a free worker first asks
the scheduler for a promotion, which continues a network from its checkpoint to the next rung as
a new trial; only when there is none does it ask the sampler for a new network at rung 0.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import optuna
import pandas as pd
from optuna.trial import TrialState

from bitnas.errors import RunFailed
from bitnas.redact import redact_config
from bitnas.evaluators import load_dataset
from bitnas.spaces import Genotype

from .config import SearchConfig
from .constraints import accuracy_floor
from .footprint import StudyFootprint
from .interrupts import Interrupts
from .lease import DriverLease
from .neighbours import seed_study
from .objectives import objectives_for
from .ray_runtime import RayRuntime
from .references import record_reference, reference_frame, references_to_evaluate
from .finalists import choose_finalists
from .latency_check import check_against_references
from .report import FINAL, trials_frame
from .scheduling import AshaPlan
from .requests import REFERENCE_SEED_BASE, data_options, eval_request, teacher_spec
from .services import check_ray_address, check_tracking_uri
from .storage import describe_storage
from .study import open_study, recover_interrupted_trials
from .summary import SearchOutcome, energy_sources, format_duration
from .tracking import StudyTracker
from .trial_records import Reusable, TrialInFlight, TrialRecorder
from .views import StudyViews

# The driver prints its own progress; Optuna's per-trial log lines would only repeat it.
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class SearchAborted(RunFailed):
    """Too many trials failed; the message carries the last error."""


class LocalRayDied(RunFailed):
    """The Ray node this driver started is gone; no trial can run until the search is restarted."""


@dataclass
class ReferenceInFlight:
    name: str
    genotype: Genotype
    started: float


def _counts(trial) -> bool:
    """Counts towards `trials`: any trial but an ASHA promotion (a network trained further)."""
    return not trial.user_attrs.get("asha_rung")


def _reusable(trials) -> dict[str, Reusable]:
    """Genotype hash -> the result an identical network proposed again reuses."""
    return {t.user_attrs["genotype_hash"]: Reusable(t.number, dict(t.user_attrs)) for t in trials
            if "genotype_hash" in t.user_attrs and "duplicate_of" not in t.user_attrs}


def _one_shot(metrics: dict) -> bool:
    """Scored from the supernet rather than trained."""
    return bool(metrics.get("supernet_score"))


class _SearchLoop:
    """One run of the driver: keeps `workers` evaluations in flight until the study has
    `trials` completed trials. Reference architectures not yet evaluated are first in the queue and
    take worker slots like trials; they never hold the trials back."""

    def __init__(self, config: SearchConfig, study: optuna.Study, recorder: TrialRecorder, views: StudyViews,
                 tracker: StudyTracker, lease: DriverLease, geometry: dict, out: Callable[[str], None],
                 asha: AshaPlan | None = None, deadline: float | None = None):
        self.config, self.study, self.recorder, self.views = config, study, recorder, views
        self.footprint = recorder.footprint
        self.tracker, self.lease, self.geometry, self.out = tracker, lease, geometry, out
        self.asha = asha  # `schedule: asha`: the scheduler; None trains every trial to the end
        self.pending: dict = {}                        # Ray ref -> TrialInFlight
        self.references: dict = {}                     # Ray ref -> ReferenceInFlight
        self.reference_queue = list(references_to_evaluate(config.references, geometry, study).items())
        self.waiting: dict[str, list[TrialInFlight]] = {}  # genotype hash -> trials waiting on an identical one
        completed = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if t.user_attrs.get("fidelity") != FINAL]
        self.known = _reusable(completed)
        # Learning curves of finished trials, sent with each request for early stopping (a one-shot
        # score is no learning curve).
        self.curves = [tuple(t.user_attrs["epoch_val_accuracy"]) for t in completed
                       if t.user_attrs.get("epoch_val_accuracy") and "duplicate_of" not in t.user_attrs
                       and not _one_shot(t.user_attrs.get("metrics", {}))]
        self.proxy_key = f"proxy_{config.proxies.proxy}"
        self.proxy_scores = [t.user_attrs["metrics"][self.proxy_key] for t in completed
                             if self.proxy_key in t.user_attrs.get("metrics", {}) and "duplicate_of" not in t.user_attrs]
        # Counted here rather than read back from the storage each time: the driver is the study's
        # only writer (the lease sees to that), and a database round trip per step adds up.
        self.completed_before = sum(_counts(t) for t in completed)
        self.failures, self.finished, self.last_error, self.ray_died = 0, 0, "", False
        self.started = time.monotonic()
        self.frame = pd.DataFrame()
        self.unannounced: list[tuple[int, int, str, str]] = []  # (completed, trial, objectives, note)
        self.trial_seconds: list[float] = []  # wall time of each trial evaluated by this run
        # The phase: trials (`config.trials` of them), then finalists (the front retrained at the final budget).
        self.target, self.final = config.trials, False
        self.trials_done = 0  # trials completed when the finalist phase began
        self.final_queue: list[tuple[dict, int]] = []  # (params, trial it retrains)
        self.deadline, self.deadline_told = deadline, False  # time.monotonic() after which no trial is proposed

    def start_finalists(self, chosen: list[tuple[dict, int]]) -> None:
        """Switch to the finalist phase: `chosen` are (params, trial number) of the networks to retrain."""
        finals = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                  if t.user_attrs.get("fidelity") == FINAL]
        self.trials_done = self.completed()
        self.final, self.final_queue = True, list(chosen)
        self.known = _reusable(finals)
        self.completed_before, self.finished, self.trial_seconds = len(finals), 0, []
        self.target = len(finals) + len(chosen)

    def out_of_time(self) -> bool:
        """The trial phase's time budget is spent (finalists are never cut short by it); said once."""
        spent = not self.final and self.deadline is not None and time.monotonic() >= self.deadline
        if spent and not self.deadline_told:
            self.deadline_told = True
            self.out(f"time budget of {format_duration(self.config.time_budget_s)} spent: no new trials or promotions "
                     f"({self.completed()} completed, {self.in_flight()} finishing)")
        return spent

    def completed(self) -> int:
        """Completed in the current phase (trials, or finalists)."""
        return self.completed_before + self.finished

    def trials_completed(self) -> int:
        return self.trials_done if self.final else self.completed()

    def in_flight(self) -> int:
        """Trials dispatched or waiting on an identical network (references not counted)."""
        return len(self.pending) + sum(len(w) for w in self.waiting.values())

    def proposals_in_flight(self) -> int:
        """In flight and counted towards the budget: ASHA promotions are not."""
        return self.in_flight() - sum(item.continues for item in self.pending.values())

    def promotions_left(self) -> bool:
        return self.asha is not None and not self.final and self.asha.has_work()

    def busy(self) -> int:
        """Worker slots taken."""
        return len(self.pending) + len(self.references)

    def run(self, runtime: RayRuntime, remote_evaluate, interrupts: Interrupts) -> None:
        ready: list = []
        while True:
            self.lease.refresh()
            if (((self.completed() >= self.target and not self.promotions_left()) or self.out_of_time())
                    and not self.in_flight() and not self.references):
                self._announce()
                return
            # Workers whose trial just finished get their next one before the driver records the
            # finished ones (MLflow artefacts, the study's tell) and refreshes the views: a worker
            # never waits for the driver's bookkeeping. The finished trials still count as in
            # flight here, so the trial budget holds and an identical network waits for their result.
            self._fill(remote_evaluate, interrupts, finishing=len(ready))
            for ref in ready:
                with interrupts.shielded():  # recorded in storage and MLflow, or still pending
                    if ref in self.references:
                        self._collect_reference(runtime, ref)
                    else:
                        self._collect(runtime, remote_evaluate, ref)
            self._announce()
            # The one place a stop takes effect: every finished trial is recorded by now, and the
            # next ones are still running (they are failed as interrupted, never left RUNNING).
            interrupts.check()
            ready, _ = runtime.wait([*self.pending, *self.references], timeout=1.0)

    def _fill(self, remote_evaluate, interrupts: Interrupts, finishing: int) -> None:
        """Dispatch references, then ask and dispatch trials, while a worker is free (and, for
        trials, the budget allows)."""
        while self.reference_queue and self.busy() - finishing < self.config.workers:
            self._dispatch_reference(remote_evaluate)
        while self.busy() - finishing < self.config.workers and not self.out_of_time():
            with interrupts.shielded():  # asked and dispatched (or resolved), or not asked at all
                # A promotion first (ASHA's top-down order finishes promising networks first); else a
                # new network while the budget allows. A worker never waits for a rung to fill.
                job = self.asha.next_job() if self.asha is not None and not self.final else None
                if job is not None:
                    self._promote(remote_evaluate, job)
                elif self.completed() + self.proposals_in_flight() < self.target:
                    self._ask_and_dispatch(remote_evaluate)
                else:
                    break

    def _dispatch_reference(self, remote_evaluate) -> None:
        name, genotype = self.reference_queue.pop(0)
        # Each reference's training seed is its own negative offset, apart from every trial's.
        request = eval_request(self.config, REFERENCE_SEED_BASE - self.config.references.index(name),
                               final=self.config.has_finalists)  # the budget the reported front has
        ref = remote_evaluate.remote(genotype.to_json(), request, self.config.plugins)
        self.references[ref] = ReferenceInFlight(name, genotype, time.monotonic())

    def _collect_reference(self, runtime: RayRuntime, ref) -> None:
        """Record a finished reference; one that fails is reported and skipped, the search goes on."""
        item = self.references.pop(ref)
        try:
            result = runtime.get(ref)
        except Exception as error:  # noqa: BLE001 - a reference that fails does not stop the search
            self.out(f"[ref] {item.name} failed: {runtime.describe_error(error)}")
            return
        footprint = self.footprint.record(result.footprint)
        record_reference(self.study, self.tracker, item.name, item.genotype, result, footprint)
        self.footprint.add(footprint, "reference")
        self.out(f"[ref] {item.name:<22} " + "  ".join(f"{k} {result.metrics[k]:.4g}" for k in
                                                      ("val_accuracy", "latency_ms", "energy_uj"))
                 + f"  ({time.monotonic() - item.started:.1f}s)")

    def _ask_and_dispatch(self, remote_evaluate) -> None:
        if self.final:  # the next finalist: its network fixed, asked as a trial of its own
            fixed, source = self.final_queue.pop(0)
            self.study.enqueue_trial(fixed, user_attrs={"finalist_of": source})
        self._dispatch_proposal(remote_evaluate, self.study.ask())

    def _network_of(self, trial: optuna.Trial) -> tuple[dict, Genotype]:
        """The asked trial's params (its queued ones, or the sampler's) and network; tags its fidelity."""
        params = {name: trial.suggest_categorical(name, choices) for name, choices in self.config.space.choices().items()}
        trial.set_user_attr("fidelity", FINAL if self.final else self.config.evaluation)
        return params, self.config.space.decode(params, **self.geometry)

    def _dispatch_proposal(self, remote_evaluate, trial: optuna.Trial) -> None:
        """A network the sampler proposed (or a queued retry or finalist): evaluate it, or reuse an
        identical network's result, or wait for an identical one in flight."""
        params, genotype = self._network_of(trial)
        item = TrialInFlight(trial, genotype, params, time.monotonic(), int(trial.user_attrs.get("attempt", 1)))
        self.recorder.start(item)
        key = genotype.hash()
        if key in self.known:
            self.recorder.duplicate(item, self.known[key])
            self._report(item, self.known[key].user_attrs["metrics"], note=f"same network as trial {self.known[key].number}")
        elif any(p.genotype.hash() == key for p in self.pending.values()):
            self.waiting.setdefault(key, []).append(item)
        else:
            self._dispatch_new(remote_evaluate, item)

    def _dispatch_new(self, remote_evaluate, item: TrialInFlight) -> None:
        """Dispatch a network not evaluated before: under ASHA, at rung 0, as a network of its own."""
        if self.asha is not None and not self.final:
            item.network = item.trial.number
            item.trial.set_user_attr("asha_network", item.network)
            item.trial.set_user_attr("asha_rung", 0)
        self._dispatch(remote_evaluate, item)

    def _promote(self, remote_evaluate, job) -> None:
        """Continue network `job.trial_id` to rung `job.rung_index` as a new trial with the same
        params, from the checkpoint of its last rung (never through the duplicate check)."""
        previous = self.asha.latest[job.trial_id]
        params = self.study.trials[previous].params
        attrs = {"asha_network": job.trial_id, "asha_rung": job.rung_index, "promoted_from": previous}
        # A driver that died between queueing this promotion and asking for it left it queued: use that one.
        if not any(all(t.user_attrs.get(k) == v for k, v in attrs.items())
                   for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))):
            self.study.enqueue_trial(params, user_attrs=attrs)
        trial = self.study.ask()
        # The queue is first in, first out: a retry queued before this promotion comes out first. It
        # is a proposal like any (within the budget: it replaces the trial that failed).
        while trial.user_attrs.get("promoted_from") != previous or trial.user_attrs.get("asha_rung") != job.rung_index:
            self._dispatch_proposal(remote_evaluate, trial)
            trial = self.study.ask()
        params, genotype = self._network_of(trial)
        item = TrialInFlight(trial, genotype, params, time.monotonic(), 1, rung=job.rung_index, network=job.trial_id)
        self.recorder.start(item)
        self.out(f"asha: trial {previous} promoted to rung {job.rung_index}/{self.asha.top} "
                 f"({job.to_epochs:.3g} ep) as trial {trial.number}")
        self._dispatch(remote_evaluate, item, checkpoint=self.asha.read_checkpoint(job.trial_id))

    def _dispatch(self, remote_evaluate, item: TrialInFlight, checkpoint: bytes | None = None) -> None:
        # Finalists are the front: trained to the end, never stopped early or skipped by a proxy.
        # Under ASHA the scheduler stops networks, not early stopping; a network keeps its rung-0
        # trial's seed at every rung (one training run, cut into rungs).
        scheduled = item.network is not None
        request = eval_request(self.config, item.network if scheduled else item.trial.number,
                               peer_curves=() if self.final or scheduled else tuple(self.curves),
                               proxy_scores=() if self.final or item.continues else self.proxy_scores, final=self.final,
                               until_epochs=self.asha.rungs[item.rung] if scheduled else None)
        self.pending[remote_evaluate.remote(item.genotype.to_json(), request, self.config.plugins, checkpoint)] = item

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
                self._dispatch_new(remote_evaluate, first)
                if rest:
                    self.waiting[key] = rest
            return
        if item.network is not None:  # its checkpoint on disk before the study is told of the rung
            self.asha.completed(item.network, item.rung, item.trial.number, result.metrics, result.checkpoint)
        self.known[key] = self.recorder.success(item, result)
        if item.network is not None:
            self.asha.reported(item.network, item.rung, item.trial.number, result.metrics)
        if result.epoch_val_accuracy and not _one_shot(result.metrics) and item.network is None:
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
        if runtime.worker_lost(error) and runtime.local_node_died(error):
            # Every trial sent to a dead local node would fail the same way: stop now.
            if not item.continues:  # a promotion stays pending in the scheduler's state and runs again
                self.recorder.requeue(item.params, retry_of=item.trial.number, attempt=item.attempt + 1)
            self.ray_died = True
            raise LocalRayDied(f"the local Ray node died ({self.last_error}); the {self.completed()} completed "
                               f"trial(s) are kept: run the same command again to resume")
        # A promotion is reported failed rather than retried: ASHA takes one result per rung.
        retry = runtime.worker_lost(error) and item.attempt <= self.config.retries and not item.continues
        if retry:
            self.recorder.requeue(item.params, retry_of=item.trial.number, attempt=item.attempt + 1)
        elif item.network is not None:
            self.asha.reported(item.network, item.rung, item.trial.number, None)
        self.out(f"trial {item.trial.number} failed: {self.last_error}"
                 + (f" (worker lost; running it again, attempt {item.attempt + 1})" if retry else ""))
        if self.failures > self.config.max_failures:
            raise SearchAborted(f"{self.failures} trials failed (max_failures={self.config.max_failures}); "
                                f"last error: {self.last_error}")

    def _report(self, item: TrialInFlight, metrics: dict, note: str = "") -> None:
        """Count a recorded trial; its progress line waits for the next `_announce`."""
        if not item.continues:  # promotions do not count towards `trials`
            self.finished += 1
        if not note:  # evaluated here (a duplicate costs nothing)
            self.trial_seconds.append(time.monotonic() - item.started)
        if item.network is not None and not note:
            note = f"{self.asha.status_note(item.network, item.rung)}, {time.monotonic() - item.started:.1f}s"
        shown = "  ".join(f"{o.name} {v:.4g}" for o, v in zip(self.recorder.objectives, self.recorder.values(metrics)))
        self.unannounced.append((self.completed(), item.trial.number, shown,
                                 note or f"{time.monotonic() - item.started:.1f}s"))

    def _announce(self) -> None:
        """Refresh the study's views once for every trial recorded since the last call, and print
        a progress line for each."""
        if not self.unannounced:
            return
        self.footprint.checkpoint(self.completed())
        self.frame, _ = self.views.refresh()
        elapsed = time.monotonic() - self.started
        width = len(str(self.target))
        label = "finalist" if self.final else "trial"
        for done, number, shown, note in self.unannounced:
            # From the trials' median time and the workers, not from elapsed time: the first trials
            # share the pool with the references and pay the workers' start-up.
            remaining = max(0, self.target - done)
            eta = (statistics.median(self.trial_seconds) * remaining / self.config.workers if self.trial_seconds
                   else elapsed / self.finished * remaining)
            self.out(f"[{done:>{width}}/{self.target}] {label} {number:<3} {shown}  ({note})  "
                     f"pareto {int(self.frame['pareto'].sum())}  elapsed {format_duration(elapsed)}  "
                     f"eta {format_duration(eta)}")
        self.unannounced.clear()

    def abandon(self, runtime: RayRuntime) -> None:
        """Trials still in flight can never report back to this driver: fail them, never leave them RUNNING."""
        for ref in self.references:
            runtime.cancel(ref)
        for ref, item in self.pending.items():
            runtime.cancel(ref)
            self.recorder.failure(item, "interrupted: the search was stopped", status="KILLED")
        for waiters in self.waiting.values():
            for item in waiters:
                self.recorder.failure(item, "interrupted: the search was stopped", status="KILLED")
        self.pending.clear()
        self.references.clear()
        self.waiting.clear()


def _supernet(runtime: RayRuntime, config: SearchConfig, geometry: dict, tracker: StudyTracker,
              out: Callable[[str], None]):
    """Train the study's supernet as a Ray task (or read it from its cache), showing its progress;
    returns the object reference of its weights, which every trial then receives."""
    from .requests import supernet_spec

    spec = supernet_spec(config, geometry)
    started, shown, weights_ref, weights = time.monotonic(), -1, None, None
    for ref in runtime.train_supernet(spec, config.plugins):
        item = runtime.get(ref)
        if hasattr(item, "weights"):
            weights_ref, weights = ref, item
            continue
        tenth = 10 * item.step // item.steps
        if tenth != shown:  # one line per tenth of the training
            shown = tenth
            out(f"[supernet] step {item.step}/{item.steps}  loss {item.loss:.3f}  {format_duration(item.seconds)}")
    if weights is None:
        raise RunFailed("the supernet task ended without its weights")
    how = (f"trained in {format_duration(weights.seconds)}" if weights.seconds else "read from its cache")
    out(f"[supernet] {weights.digest}: {weights.steps} steps, {how}; its largest network "
        f"{weights.largest_val_accuracy:.3f} val accuracy ({format_duration(time.monotonic() - started)})")
    tracker.set_study_tags({"bitnas.supernet": weights.digest, "bitnas.supernet_steps": str(weights.steps),
                            "bitnas.supernet_largest_val_accuracy": f"{weights.largest_val_accuracy:.4f}"})
    return weights_ref


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
    # Services that do not answer are one line now, before anything is written.
    check_ray_address(config.ray.address)
    check_tracking_uri(config.tracking_uri)
    objectives = objectives_for(config.objectives)
    data = load_dataset(config.dataset, config.seed, data_options(config))
    geometry = {"input_size": data.input_size, "in_channels": data.in_channels, "num_classes": data.num_classes}
    if config.storage is None:  # the journal file lives in the results folder
        config.results_dir.mkdir(parents=True, exist_ok=True)
    study = open_study(config, objectives, geometry)  # a database that does not answer: nothing created yet
    config.results_dir.mkdir(parents=True, exist_ok=True)
    lease = DriverLease(study)
    lease.acquire()
    storage_name = describe_storage(config.results_dir, config.storage)
    footprint = None
    try:
        # What this run trains with, so that an export rebuilds the same request; passwords masked.
        recorded = redact_config(config.model_dump(mode="json"))
        study.set_user_attr("config", recorded)
        tracker = StudyTracker(config.results_dir, config.study, recorded, list(config.objectives), config.tracking_uri)
        tracker.set_study_tags({"bitnas.sampler": config.sampler, "bitnas.dataset": config.dataset,
                                "bitnas.trials_target": str(config.trials), "bitnas.target": config.latency.target,
                                "bitnas.storage": storage_name})
        # Started here, before Ray: the driver's own energy from now on (search/footprint.py).
        footprint = StudyFootprint(study, tracker, config)
        recorder = TrialRecorder(study, tracker, objectives, config, footprint, data.num_classes)
        views = StudyViews(study, tracker, objectives, config)
        recover_interrupted_trials(study, tracker, recorder, out)
        asha = AshaPlan(config, study, objectives, data.num_classes, out) if config.schedule == "asha" else None
        loop = _SearchLoop(config, study, recorder, views, tracker, lease, geometry, out, asha,
                           deadline=started + config.time_budget_s if config.time_budget_s else None)

        def outcome(completed: int, failed: int, interrupted: bool, frame, volume) -> SearchOutcome:
            return SearchOutcome(config.study, completed, failed, interrupted, frame, volume,
                                 time.monotonic() - started, objectives, storage_name, views.references,
                                 energy_sources(study), importances=views.importances,
                                 accuracy_floor=accuracy_floor(config.constraints, data.num_classes),
                                 footprint=footprint.total() if footprint.enabled else None)

        out(f"study {config.study!r} in {storage_name}: {loop.completed_before}/{config.trials} trials completed; "
            f"space of {config.space.size():,} genotypes; objectives "
            f"{', '.join(f'{o.name} ({o.direction[:3]})' for o in objectives)}")
        seed_study(study, config, geometry, out)  # a new study's first trials: the references' cheaper neighbours
        if (loop.completed_before >= config.trials and not loop.reference_queue and not loop.promotions_left()
                and not (config.has_finalists and choose_finalists(study, objectives, config.finalists))):
            out(f"nothing to do: the study already has {loop.completed_before} completed trials (raise --trials to continue)")
            frame, volume = views.refresh(final=True)
            footprint.checkpoint(loop.completed_before, final=True)
            tracker.finish()
            return outcome(loop.completed_before, 0, False, frame, volume)
        interrupted = False
        runtime = _start_ray(config, tracker, out)
        remote_evaluate = runtime.remote_evaluate(config.latency.timeout_s, teacher_spec(config))
        if loop.reference_queue:
            out(f"reference architecture(s), evaluated with the trials' budget in the same worker pool: "
                f"{', '.join(name for name, _ in loop.reference_queue)}")
        views.refresh()
        try:
            with Interrupts() as interrupts:
                if config.evaluation == "supernet":
                    remote_evaluate.supernet = _supernet(runtime, config, geometry, tracker, out)
                loop.run(runtime, remote_evaluate, interrupts)
                if asha is not None:
                    asha.finish()
                chosen = choose_finalists(study, objectives, config.finalists) if config.has_finalists else []
                if chosen:
                    out(f"finalists: {len(chosen)} network(s) of the trials' front trained again from scratch for "
                        f"{config.final_training.epochs:g} epoch(s), the references' budget")
                    loop.start_finalists(chosen)
                    loop.run(runtime, remote_evaluate, interrupts)
                if not (loop.failures > config.max_failures or loop.ray_died):
                    # The workers are idle now: time the closest trials against the references they
                    # do not beat on single measurements (search/latency_check.py).
                    frame = trials_frame(study, objectives)
                    check_against_references(study, config, objectives, reference_frame(study, objectives, frame),
                                             frame, geometry, out)
        except KeyboardInterrupt:
            interrupted = True
            out(f"\ninterrupted: stopping {loop.in_flight()} running trial(s); every completed trial is kept")
        finally:
            loop.abandon(runtime)
            runtime.shutdown()
            frame, volume = views.refresh(final=True)
            footprint.checkpoint(loop.completed(), final=True)  # the driver's last interval, however it ends
            aborted = loop.failures > config.max_failures or loop.ray_died
            tracker.finish("KILLED" if interrupted else ("FAILED" if aborted else "FINISHED"))
        return outcome(loop.trials_completed(), loop.failures, interrupted, frame, volume)
    finally:
        if footprint is not None:  # a run that ended in an error before its final checkpoint
            footprint.close()
        lease.release()
