"""The search driver: the single owner of the Optuna study (ask / tell), dispatching evaluations as
Ray tasks, `workers` at a time, and recording every finished trial at once in the study storage and
MLflow, so that a crash or Ctrl-C loses no completed trial.
"""

from __future__ import annotations

import signal
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import optuna
import pandas as pd
from optuna.trial import TrialState

from bitnas.errors import RunFailed
from bitnas.evaluators import EvalRequest, LatencyConfig, TrainingConfig, evaluate, load_dataset
from bitnas.spaces import Genotype

from .config import ConfigError, SearchConfig
from .objectives import Objective, objectives_for
from .plots import write_pareto_html, write_pareto_png
from .ray_runtime import RayRuntime
from .report import format_table, front_hypervolume, trials_frame
from .samplers import make_sampler
from .storage import open_storage
from .tracking import StudyTracker

# The driver prints its own progress; Optuna's per-trial log lines would only repeat it.
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

PLOT_INTERVAL_S = 20.0  # plots are the slow part of a refresh; csv and metrics refresh every trial


class SearchAborted(RunFailed):
    """Too many trials failed; the message carries the last error."""


@dataclass
class _Pending:
    trial: optuna.Trial
    genotype: Genotype
    params: dict
    started: float


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


def _format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class _Interrupts:
    """Ctrl-C (SIGINT) and SIGTERM stop the search with KeyboardInterrupt, but never inside a
    `shielded()` section: there the signal is held until the section ends, so that a trial is
    always recorded whole (study storage and MLflow together) or not at all."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.depth, self.deferred, self.previous = 0, False, {}

    def __enter__(self):
        for number in self.SIGNALS:
            self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        return False

    def _handle(self, signum, frame):
        if self.depth:
            self.deferred = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def shielded(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.deferred:
                self.deferred = False
                raise KeyboardInterrupt


def _open_study(config: SearchConfig, objectives: list[Objective], geometry: dict) -> optuna.Study:
    storage = open_storage(config.results_dir)
    directions = [o.direction for o in objectives]
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if config.study in names:
        study = optuna.load_study(study_name=config.study, storage=storage, sampler=make_sampler(config.sampler, config.seed))
        recorded = study.user_attrs.get("objectives")
        if recorded != list(config.objectives):
            raise ConfigError(f"study {config.study!r} was created with objectives {recorded}, not "
                              f"{list(config.objectives)}; choose another --study name")
        if study.user_attrs.get("dataset") != config.dataset:
            raise ConfigError(f"study {config.study!r} searches dataset {study.user_attrs.get('dataset')!r}, "
                              f"not {config.dataset!r}; choose another --study name")
        return study
    study = optuna.create_study(study_name=config.study, storage=storage, directions=directions,
                                sampler=make_sampler(config.sampler, config.seed))
    study.set_metric_names(list(config.objectives))
    study.set_user_attr("objectives", list(config.objectives))
    study.set_user_attr("dataset", config.dataset)
    study.set_user_attr("data_seed", config.seed)
    study.set_user_attr("geometry", geometry)
    study.set_user_attr("config", config.model_dump(mode="json"))
    return study


def _fail_stale_trials(study: optuna.Study, out: Callable[[str], None]) -> None:
    """Trials left RUNNING by a driver that died can never finish: mark them failed."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
    if stale:
        out(f"marked {len(stale)} trial(s) left running by an earlier, interrupted search as failed")


def _request(config: SearchConfig, trial_number: int) -> EvalRequest:
    return EvalRequest(
        dataset=config.dataset, data_seed=config.seed, seed=config.seed * 100_003 + trial_number,
        training=TrainingConfig(**config.training.model_dump()), latency=LatencyConfig(**config.latency.model_dump()),
        energy_profile=config.energy_profile,
    )


def _cost_csv(rows: list[dict]) -> str:
    return pd.DataFrame(rows).to_csv(index=False)


class _Views:
    """Refreshes the study run's pareto.csv, trials.csv, hypervolume and (at most every
    PLOT_INTERVAL_S) the Pareto plots."""

    def __init__(self, study: optuna.Study, tracker: StudyTracker, objectives: list[Objective], config: SearchConfig):
        self.study, self.tracker, self.objectives, self.config = study, tracker, objectives, config
        self.last_plot = float("-inf")

    def refresh(self, *, final: bool = False) -> tuple[pd.DataFrame, float]:
        frame = trials_frame(self.study, self.objectives)
        volume = front_hypervolume(frame, self.objectives, self.config.hypervolume_reference) if len(frame) else 0.0
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            frame[frame["pareto"]].to_csv(folder / "pareto.csv", index=False)
            frame.to_csv(folder / "trials.csv", index=False)
            now = time.monotonic()
            if len(frame) and (final or now - self.last_plot >= PLOT_INTERVAL_S):
                title = f"bitnas study {self.config.study}: {len(frame)} trials"
                write_pareto_png(frame, self.objectives, folder / "pareto.png", title)
                write_pareto_html(frame, self.objectives, folder / "pareto.html", title)
                self.last_plot = now
            self.tracker.log_study_views(folder, hypervolume=volume, pareto_size=int(frame["pareto"].sum()),
                                         completed=len(frame))
        return frame, volume


def run_search(config: SearchConfig, out: Callable[[str], None] = print) -> SearchOutcome:
    started = time.monotonic()
    objectives = objectives_for(config.objectives)
    data = load_dataset(config.dataset, config.seed)
    geometry = {"input_size": data.input_size, "in_channels": data.in_channels, "num_classes": data.num_classes}
    config.results_dir.mkdir(parents=True, exist_ok=True)
    study = _open_study(config, objectives, geometry)
    _fail_stale_trials(study, out)
    tracker = StudyTracker(config.results_dir, config.study, config.model_dump(mode="json"), list(config.objectives))
    tracker.set_study_tags({"bitnas.sampler": config.sampler, "bitnas.dataset": config.dataset,
                            "bitnas.trials_target": str(config.trials), "bitnas.target": "cpu (torch)"})
    views = _Views(study, tracker, objectives, config)

    def completed_count() -> int:
        return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    completed_before = completed_count()
    space_size = config.space.size()
    out(f"study {config.study!r}: {completed_before}/{config.trials} trials completed; space of {space_size:,} "
        f"genotypes; objectives {', '.join(f'{o.name} ({o.direction[:3]})' for o in objectives)}")
    if completed_before >= config.trials:
        out(f"nothing to do: the study already has {completed_before} completed trials (raise --trials to continue)")
        frame, volume = views.refresh(final=True)
        tracker.finish()
        return SearchOutcome(config.study, completed_before, 0, False, frame, volume, time.monotonic() - started, objectives)

    runtime = RayRuntime.start(workers=config.workers, out=out)
    remote_evaluate = runtime.remote(evaluate)
    pending: dict = {}
    failures, finished_here, interrupted, last_error = 0, 0, False, ""
    frame, volume = views.refresh()
    loop_started = time.monotonic()
    interrupts = _Interrupts()
    try:
        with interrupts:
            while True:
                done = completed_count()
                if done >= config.trials and not pending:
                    break
                while len(pending) < config.workers and done + len(pending) < config.trials:
                    with interrupts.shielded():  # asked and dispatched, or not asked at all
                        trial = study.ask()
                        params = {name: trial.suggest_categorical(name, choices)
                                  for name, choices in config.space.choices().items()}
                        genotype = config.space.decode(params, **geometry)
                        trial.set_user_attr("genotype", genotype.to_dict())
                        trial.set_user_attr("genotype_hash", genotype.hash())
                        trial.set_user_attr("genotype_short", genotype.short())
                        ref = remote_evaluate.remote(genotype.to_json(), _request(config, trial.number))
                        pending[ref] = _Pending(trial, genotype, params, time.monotonic())
                ready, _ = runtime.wait(list(pending), timeout=1.0)
                for ref in ready:
                    with interrupts.shielded():  # recorded in storage and MLflow, or still pending
                        item = pending.pop(ref)
                        try:
                            result = runtime.get(ref)
                        except Exception as error:  # noqa: BLE001 - a failure of one trial fails that trial only
                            failures += 1
                            last_error = runtime.describe_error(error)
                            _record_failure(study, tracker, item, last_error)
                            out(f"trial {item.trial.number} failed: {last_error}")
                            if failures > config.max_failures:
                                raise SearchAborted(f"{failures} trials failed (max_failures={config.max_failures}); "
                                                    f"last error: {last_error}")
                            continue
                        values = [result.metrics[o.metric] for o in objectives]
                        _record_success(study, tracker, item, result, values)
                        finished_here += 1
                        frame, volume = views.refresh()
                    out(_progress_line(config, objectives, item, values, frame, finished_here,
                                       completed_before, loop_started))
    except KeyboardInterrupt:
        interrupted = True
        out(f"\ninterrupted: stopping {len(pending)} running trial(s); every completed trial is kept")
    finally:
        # Trials still running can never report back to this driver: fail them, never leave them RUNNING.
        for ref, item in pending.items():
            runtime.cancel(ref)
            study.tell(item.trial, state=TrialState.FAIL, skip_if_finished=True)
        runtime.shutdown()
        frame, volume = views.refresh(final=True)
        tracker.finish("KILLED" if interrupted else ("FAILED" if failures > config.max_failures else "FINISHED"))
    return SearchOutcome(config.study, completed_count(), failures, interrupted, frame, volume,
                         time.monotonic() - started, objectives)


def _record_success(study: optuna.Study, tracker: StudyTracker, item: _Pending, result, values: list[float]) -> None:
    item.trial.set_user_attr("metrics", result.metrics)
    item.trial.set_user_attr("latency", result.latency)
    item.trial.set_user_attr("energy_source", result.energy_source)
    # MLflow first: the weights are only kept there, and a trial told COMPLETE must have them.
    tracker.log_trial(
        item.trial.number, params=item.params, genotype_json=item.genotype.to_json(indent=2),
        genotype_short=item.genotype.short(), genotype_hash=result.genotype_hash,
        metrics=result.metrics, epoch_accuracy=result.epoch_val_accuracy,
        files={"weights.safetensors": result.weights, "costs.csv": _cost_csv(result.cost_rows),
               "latency.json": pd.Series(result.latency).to_json(indent=2)},
    )
    study.tell(item.trial, values)


def _record_failure(study: optuna.Study, tracker: StudyTracker, item: _Pending, error: str) -> None:
    item.trial.set_user_attr("fail_reason", error[:2000])
    study.tell(item.trial, state=TrialState.FAIL)
    tracker.log_trial(item.trial.number, params=item.params, genotype_json=item.genotype.to_json(indent=2),
                      genotype_short=item.genotype.short(), genotype_hash=item.genotype.hash(), error=error)


def _progress_line(config: SearchConfig, objectives: list[Objective], item: _Pending, values: list[float],
                   frame: pd.DataFrame, finished_here: int, completed_before: int, loop_started: float) -> str:
    done = completed_before + finished_here
    elapsed = time.monotonic() - loop_started
    remaining = max(0, config.trials - done)
    eta = elapsed / finished_here * remaining
    shown = "  ".join(f"{o.name} {v:.4g}" for o, v in zip(objectives, values))
    width = len(str(config.trials))
    return (f"[{done:>{width}}/{config.trials}] trial {item.trial.number:<3} {shown}  "
            f"({time.monotonic() - item.started:.1f}s)  pareto {int(frame['pareto'].sum())}  "
            f"elapsed {_format_duration(elapsed)}  eta {_format_duration(eta)}")


def summary_text(outcome: SearchOutcome, results: Path) -> str:
    from .tracking import ui_command

    lines = [
        "",
        f"Pareto front of study {outcome.study!r} ({int(outcome.frame['pareto'].sum())} of {len(outcome.frame)} "
        f"completed trials; hypervolume {outcome.hypervolume:.4g}; {_format_duration(outcome.seconds)} wall time):",
        format_table(outcome.frame, outcome.objectives),
        "",
        "latency: torch on this CPU at batch 1 (binary layers simulated in float); energy: analytic, Horowitz 45 nm MACs",
        f"open the MLflow UI:  {ui_command(results)}",
        f"export the front:    bitnas export --study {outcome.study} --results {results}",
    ]
    return "\n".join(lines)
