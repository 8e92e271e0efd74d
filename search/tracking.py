"""MLflow records of a study: one experiment per study, a parent run for the study, one child run
per trial. Runs are found again by tags (study, trial number), so a resumed search never makes a
second run for the same trial.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Iterable

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from bitnas.errors import UserError
from bitnas.redact import MASK, redact_url

ROLE_TAG, STUDY_TAG, TRIAL_TAG = "bitnas.role", "bitnas.study", "bitnas.trial_number"
PARENT_TAG = "mlflow.parentRunId"
PARETO_TAG = "pareto"  # "true" on the runs of the current Pareto front, "false" on other completed trials
ASHA_TRIALS_TAG = "bitnas.asha_trials"  # on a network's run under schedule: asha: the trials that continued it
DB_NAME, ARTIFACTS_DIR = "mlflow.db", "mlartifacts"

for noisy in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def tracking_uri(results: Path, configured: str | None = None) -> str:
    """The configured tracking URI (an `mlflow server`, e.g. http://127.0.0.1:5000), else the
    results directory's own sqlite store."""
    return configured or f"sqlite:///{(results / DB_NAME).resolve()}"


def ui_command(results: Path) -> str:
    return f"bitnas ui --results {results}   (or: mlflow ui --backend-store-uri {tracking_uri(results)} --host 127.0.0.1 --port 5000)"


def _flatten(prefix: str, value: object) -> Iterable[tuple[str, str]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
    elif isinstance(value, (list, tuple)):
        yield prefix, json.dumps(value)
    else:
        yield prefix, str(value)


def find_trial_run_id(client: MlflowClient, experiment_id: str, trial_number: int) -> str | None:
    """The run of a trial: its own, or (`schedule: asha`) the run of the network it continues, whose
    `bitnas.asha_trials` tag lists every trial that trained that network further (",7,12,")."""
    runs = client.search_runs([experiment_id], f"tags.`{ROLE_TAG}` = 'trial' AND tags.`{TRIAL_TAG}` = '{trial_number}'",
                              max_results=1)
    if not runs:
        runs = client.search_runs([experiment_id], f"tags.`{ROLE_TAG}` = 'trial' AND "
                                                   f"tags.`{ASHA_TRIALS_TAG}` LIKE '%,{trial_number},%'", max_results=1)
    return runs[0].info.run_id if runs else None


class StudyTracker:
    """Owns the study's MLflow experiment and runs; used by the driver only."""

    def __init__(self, results: Path, study: str, config: dict, objective_names: list[str],
                 configured_uri: str | None = None):
        """`config` is what gets logged (its secrets already masked, bitnas.redact); the tracking
        server is `configured_uri` (which may carry a password), else <results>/mlflow.db."""
        self.uri = tracking_uri(results, configured_uri)
        self.client = MlflowClient(self.uri)
        self.study = study
        self._pareto_tags: dict[int, str] | None = None  # trial number -> its run's `pareto` tag, as last set
        self._trial_runs: dict[int, str] = {}
        experiment = self.client.get_experiment_by_name(study)
        if experiment is None:
            # A tracking server keeps artefacts where it is configured to; the embedded store
            # keeps them next to its database.
            location = None if configured_uri else (results / ARTIFACTS_DIR).resolve().as_uri()
            self.experiment_id = self.client.create_experiment(study, artifact_location=location,
                                                               tags={STUDY_TAG: study})
        else:
            self.experiment_id = experiment.experiment_id
        found = self.client.search_runs([self.experiment_id], f"tags.`{ROLE_TAG}` = 'study'", max_results=1)
        if found:
            self.parent_id = found[0].info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            run = self.client.create_run(self.experiment_id, run_name=study,
                                         tags={ROLE_TAG: "study", STUDY_TAG: study,
                                               "bitnas.objectives": ",".join(objective_names)})
            self.parent_id = run.info.run_id
            # Params are immutable in MLflow: the configuration that created the study is logged
            # once; a resumed run's configuration is kept as the `config.json` artefact instead.
            params = [Param(key, value[:6000]) for key, value in _flatten("", config)]
            for start in range(0, len(params), 100):
                self.client.log_batch(self.parent_id, params=params[start:start + 100])
        self._log_files(self.parent_id, {"config.json": json.dumps(config, indent=2, sort_keys=True)})

    # --- trials ----------------------------------------------------------------------------------
    def start_trial(self, number: int, *, params: dict, genotype_json: str, genotype_short: str,
                    genotype_hash: str, tags: dict[str, str] | None = None) -> str:
        """Open the trial's child run (RUNNING) when it is dispatched, or find it again."""
        run_id = self._trial_run(number, {"bitnas.genotype_hash": genotype_hash, "bitnas.genotype": genotype_short[:5000],
                                          **(tags or {})})
        existing = self.client.get_run(run_id).data.params
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items() if k not in existing])
        self._log_files(run_id, {"genotype.json": genotype_json, "genotype.txt": genotype_short + "\n"})
        return run_id

    def continue_trial(self, network: int, number: int) -> str:
        """`schedule: asha`: trial `number` trains network `network` (its rung-0 trial) further. One
        MLflow run per network: the network's run is reopened (RUNNING) and lists `number` in its
        `bitnas.asha_trials` tag, so the trial's metrics (logged at step = rung) and latest
        weights land there, and `find_trial_run_id(number)` finds it."""
        run_id = find_trial_run_id(self.client, self.experiment_id, network)
        if run_id is None:
            raise LookupError(f"no MLflow run for trial {network} of study {self.study!r}, which trial {number} continues")
        listed = self.client.get_run(run_id).data.tags.get(ASHA_TRIALS_TAG, ",")
        if f",{number}," not in listed:
            self.client.set_tag(run_id, ASHA_TRIALS_TAG, f"{listed}{number},")
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def _trial_run(self, number: int, tags: dict[str, str]) -> str:
        """The trial's child run, found by its tags or made now."""
        run_id = find_trial_run_id(self.client, self.experiment_id, number)
        if run_id is None:
            run_id = self.client.create_run(
                self.experiment_id, run_name=f"trial-{number}",
                tags={ROLE_TAG: "trial", STUDY_TAG: self.study, TRIAL_TAG: str(number), PARENT_TAG: self.parent_id,
                      **tags}).info.run_id
        return run_id

    def kill_trial(self, number: int, *, params: dict, error: str) -> None:
        """Close a trial that a driver which died left running, as KILLED. A driver killed between
        asking for a trial and opening its run left it none: it gets one now, so every trial of the
        study has exactly one run."""
        run_id = self._trial_run(number, {})
        existing = self.client.get_run(run_id).data.params
        self.client.log_batch(run_id, params=[Param(k, str(v)) for k, v in params.items() if k not in existing])
        self.finish_trial_run(run_id, status="KILLED", tags={"bitnas.error": error})

    def finish_trial(self, number: int, *, status: str, metrics: dict[str, float] | None = None,
                     epoch_accuracy: list[float] | None = None, files: dict[str, bytes | str] | None = None,
                     tags: dict[str, str] | None = None, step: int = 0) -> None:
        """Record the outcome on the trial's run and close it: FINISHED, FAILED or KILLED. `step`:
        the ASHA rung, so that a network's run holds each rung's metrics as one step."""
        run_id = find_trial_run_id(self.client, self.experiment_id, number)
        if run_id is None:
            raise LookupError(f"no MLflow run for trial {number} of study {self.study!r}")
        self.finish_trial_run(run_id, status=status, metrics=metrics, epoch_accuracy=epoch_accuracy, files=files,
                              tags=tags, step=step)

    def finish_trial_run(self, run_id: str, *, status: str, metrics: dict[str, float] | None = None,
                         epoch_accuracy: list[float] | None = None, files: dict[str, bytes | str] | None = None,
                         tags: dict[str, str] | None = None, step: int = 0) -> None:
        metric_list = [Metric(k, float(v), 0, step) for k, v in (metrics or {}).items()]
        metric_list += [Metric("val_accuracy_epoch", float(a), 0, step) for step, a in enumerate(epoch_accuracy or [], 1)]
        tag_list = [RunTag(k, v[:5000]) for k, v in (tags or {}).items()]
        self.client.log_batch(run_id, metrics=metric_list, tags=tag_list)
        if files:
            self._log_files(run_id, files)
        self.client.set_terminated(run_id, status)

    def record_reference(self, name: str, *, genotype_json: str, genotype_short: str, genotype_hash: str,
                         metrics: dict[str, float], epoch_accuracy: list[float], cost_csv: str) -> None:
        """The reference architecture's run (tagged `bitnas.role = reference`), made once per study."""
        found = self.client.search_runs(
            [self.experiment_id], f"tags.`{ROLE_TAG}` = 'reference' AND tags.`bitnas.reference` = '{name}'",
            max_results=1)
        run_id = found[0].info.run_id if found else self.client.create_run(
            self.experiment_id, run_name=f"reference-{name}",
            tags={ROLE_TAG: "reference", STUDY_TAG: self.study, PARENT_TAG: self.parent_id, "bitnas.reference": name,
                  "bitnas.genotype": genotype_short[:5000], "bitnas.genotype_hash": genotype_hash}).info.run_id
        self.finish_trial_run(run_id, status="FINISHED", metrics=metrics, epoch_accuracy=epoch_accuracy,
                              files={"genotype.json": genotype_json, "costs.csv": cost_csv})

    def _log_files(self, run_id: str, files: dict[str, bytes | str]) -> None:
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            for name, content in files.items():
                target = folder / name
                if isinstance(content, bytes):
                    target.write_bytes(content)
                else:
                    target.write_text(content)
            self.client.log_artifacts(run_id, str(folder))

    # --- study views -------------------------------------------------------------------------------
    def log_study_views(self, folder: Path, *, hypervolume: float, pareto_size: int, completed: int) -> None:
        self.client.log_batch(self.parent_id, metrics=[
            Metric("hypervolume", hypervolume, 0, completed), Metric("pareto_size", float(pareto_size), 0, completed),
            Metric("completed_trials", float(completed), 0, completed)])
        self.client.log_artifacts(self.parent_id, str(folder))

    def log_footprint(self, metrics: dict[str, float], *, step: int, source: str) -> None:
        """The study's energy footprint so far (search/footprint.py), as metrics of the study's run."""
        # Timestamped, unlike the views' metrics: two checkpoints at the same step (the last trial's
        # and the run's end) must leave the later one as the run's latest value.
        now = int(time.time() * 1000)
        self.client.log_batch(self.parent_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
                              tags=[RunTag("bitnas.footprint_source", source[:5000])] if source else [])

    def set_pareto_tags(self, front: set[int], completed: set[int]) -> None:
        """Keep the tag `pareto` (true/false) of every completed trial's run equal to its place in
        the current front, so the MLflow search box finds the front with `tags.pareto = "true"`.
        Only runs whose membership changed are written."""
        if self._pareto_tags is None:
            self._pareto_tags = {}
            for run in self._all_trial_runs():
                number = int(run.data.tags[TRIAL_TAG])
                self._trial_runs[number] = run.info.run_id
                if PARETO_TAG in run.data.tags:
                    self._pareto_tags[number] = run.data.tags[PARETO_TAG]
        for number in sorted(completed):
            wanted = "true" if number in front else "false"
            if self._pareto_tags.get(number) == wanted:
                continue
            run_id = self._trial_runs.get(number) or find_trial_run_id(self.client, self.experiment_id, number)
            if run_id is None:
                continue
            self._trial_runs[number] = run_id
            self.client.set_tag(run_id, PARETO_TAG, wanted)
            self._pareto_tags[number] = wanted

    def _all_trial_runs(self) -> list:
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], f"tags.`{ROLE_TAG}` = 'trial'", max_results=1000,
                                           page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def set_study_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.parent_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_id, status)


class TrialArtifacts:
    """Read side of a study's MLflow store, for export: the trained weights of a trial, and the
    model registry. Opens no run and changes nothing until `register` is called."""

    def __init__(self, results: Path, study: str, configured: str | None):
        if configured and f":{MASK}@" in configured:
            raise UserError(f"the study's tracking URI {configured} carries a password, which bitnas does not store: "
                            "give it with --tracking-uri")
        if not configured and not (results / DB_NAME).is_file():
            raise UserError(f"no MLflow store at {results / DB_NAME}: the trained weights are kept there")
        self.client = MlflowClient(tracking_uri(results, configured))
        self.study = study
        experiment = self.client.get_experiment_by_name(study)
        self.experiment_id = experiment.experiment_id if experiment else None

    @property
    def uri(self) -> str:
        return self.client.tracking_uri

    def run_id(self, trial_number: int) -> str:
        run_id = find_trial_run_id(self.client, self.experiment_id, trial_number) if self.experiment_id else None
        if run_id is None:
            raise UserError(f"no MLflow run for trial {trial_number} of study {self.study!r}")
        return run_id

    def weights(self, trial_number: int, into: Path) -> Path:
        """Download the trial's `weights.safetensors` into `into`; one line naming what is missing."""
        from mlflow.exceptions import MlflowException

        run_id = self.run_id(trial_number)
        try:
            return Path(self.client.download_artifacts(run_id, "weights.safetensors", str(into)))
        except (MlflowException, OSError) as error:
            raise UserError(f"trial {trial_number}: its trained weights (weights.safetensors) cannot be read from "
                            f"{redact_url(self.uri)}: {redact_url(str(error).strip().splitlines()[0][:200])}") from None
