"""The search configuration: embedded defaults, overridden by a YAML file, overridden by flags.

Every key is validated before anything is created; a problem becomes one `ConfigError` line that
names the key (`training.epochs: Input should be greater than 0 (got -1)`). Validation imports
neither torch nor Ray nor MLflow. The sections the workers read (training, data, latency, early
stopping) are the evaluators' own settings classes, so each default is declared once.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bitnas.errors import UserError
from bitnas.evaluators.settings import DataSettings, EarlyStoppingRule, LatencyConfig, SupernetConfig, TrainingConfig
from bitnas.paths import directory_problem
from bitnas.spaces.baselines import BASELINES, SMALL_BASELINES
from bitnas.spaces.budget import ResourceBudget
from bitnas.spaces.genotype import describe_validation_error
from bitnas.spaces.space import SpaceConfig

from .objectives import OBJECTIVES

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class ConfigError(UserError):
    """Bad configuration or arguments; the message is one line naming the problem."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProxiesSection(_Section):
    """Zero-cost proxies computed at initialisation (evaluators/proxies.py). With `prefilter`, a
    trial whose proxy ranks in the bottom `bottom_fraction` of the trials scored so far is not
    trained (it is recorded as pruned) once `min_trials` have been scored."""

    prefilter: bool = False
    proxy: Literal["naswot", "synflow", "grad_norm", "params", "bops"] = "naswot"
    bottom_fraction: float = Field(0.5, gt=0, lt=1)
    min_trials: int = Field(10, ge=1, le=100_000)


class LatencySection(LatencyConfig):
    """How latency is measured (LatencyConfig, what the worker reads) and where (the driver's business)."""

    # A Ray custom resource that only the target device's node offers (`ray start --resources
    # '{"rpi4": 1}'`): trials train wherever Ray places them, and latency is measured on that node.
    resource: str | None = None
    timeout_s: float = Field(600.0, gt=0, le=86_400)  # a measurement not done by then fails the trial


class RaySection(_Section):
    # None starts a local Ray on 127.0.0.1 (the embedded default); "auto" or "HOST:PORT" joins a
    # running cluster (`ray start --head` ...).
    address: str | None = None
    num_cpus_per_trial: float = Field(1.0, ge=0, le=1024)
    num_gpus_per_trial: float = Field(0.0, ge=0, le=64)
    # Custom resources each trial needs, e.g. {"rpi4": 1} to run on the node started with
    # `ray start --resources '{"rpi4": 1}'`.
    resources: dict[str, float] = Field(default_factory=dict)


class ConstraintsSection(_Section):
    """Budgets a network must meet to count: trials that break one stay in the study (the sampler
    learns from them) but are kept off the Pareto front and out of exports."""

    max_latency_ms: float | None = Field(None, gt=0)
    max_size_kb: float | None = Field(None, gt=0)
    max_energy_uj: float | None = Field(None, gt=0)
    min_accuracy: float | None = Field(None, ge=0, le=1)
    # A floor every network must clear, whatever the budgets: this share of the way from chance
    # (1 / classes) to perfect accuracy, 0.19 validation accuracy for 10 classes. A chance-level
    # network is always the fastest and most frugal one, so without it such networks sit on the
    # front; null turns the floor off.
    accuracy_floor: float | None = Field(0.1, ge=0, lt=1)


class FootprintSection(_Section):
    """The energy the search itself uses (evaluators/footprint.py, CodeCarbon's offline tracker):
    each trial on its worker and the driver's own share, summed per study across resumes."""

    # False where CodeCarbon cannot run (or its 2-3 s of hardware detection per worker is unwanted).
    enabled: bool = True
    # g CO2 per kWh of the electricity used: the world average of 475 g/kWh (IEA, 2018 generation;
    # docs/references.md, "Grid carbon intensity"); set your grid's figure for a truer CO2 count.
    grid_intensity_g_per_kwh: float = Field(475.0, ge=0, le=2000)


class AshaSection(_Section):
    """`schedule: asha`: the rung ladder of multi-objective ASHA (search/asha.py). Rung 0 trains
    `min_epochs`, each rung `eta` times the one below, the top rung `training.epochs`; at each rung
    the best 1/eta (non-dominated rank, then crowding) continue from their checkpoint."""

    # A fraction of an epoch is allowed: the learning-rate schedule is over the full budget, so a
    # rung is a point on one training run, not a shorter run of its own.
    min_epochs: float = Field(0.25, gt=0, le=1000)
    # 3 as in the ASHA paper: 1/3 of each rung goes on; 2 keeps more, 4 or more prunes harder.
    eta: int = Field(3, ge=2, le=100)


class SearchConfig(_Section):
    study: str = "mnist5k-default"
    trials: int = Field(20, ge=1, le=100_000)
    # Wall time (seconds since this run of the search started: Ray's start-up and the supernet's training
    # count) after which no new trial is proposed; trials running then finish, and finalists are
    # trained afterwards. null: only `trials` ends the search. Strategies compare at equal wall
    # time this way (benchmarks/search_quality.py); `trials` still sizes the samplers.
    time_budget_s: float | None = Field(None, gt=0, le=30 * 86_400)
    workers: int = Field(2, ge=1, le=1024)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    results: str = "results"
    dataset: Literal["mnist5k", "digits", "cifar10", "imagefolder"] = "mnist5k"
    # The directory cifar10 (python-pickle batches) or imagefolder (one folder per class) reads.
    data_dir: str | None = None
    data: DataSettings = Field(default_factory=DataSettings)
    early_stopping: EarlyStoppingRule = Field(default_factory=EarlyStoppingRule)
    proxies: ProxiesSection = Field(default_factory=ProxiesSection)
    # The default strategy (this sampler, evaluation and schedule) is what benchmarks/search_quality.py
    # --quick found at equal wall time (3-minute studies, 3 seeds): median hypervolume random from
    # scratch 825.0, ASHA 826.3, supernet + random / TPE / NSGA-II 813.6 / 814.5 / 785.0, ranges overlapping;
    # nothing beat random search by more than the seeds' spread, so the simplest stays. Random search
    # with the references' cheaper neighbours first (`reference_neighbours`) scored 863 against 852 in
    # a later run of two strategies (each seed higher, bireal_small dominated in 3 of 3 against 0).
    # Pareto local search after those neighbours (`local`) scored 821.9 against their 830.1 (random
    # alone 745.3): a 3-minute study has too few trials left for it, so random stays the default.
    # With reactnet_small in the space and among the references (--tag box), the neighbours-first
    # random search dominated 5/5/5 of the 7 references per seed (random search alone 0/1/3).
    sampler: Literal["random", "tpe", "nsga2", "gp", "local"] = "random"
    # How a trial's accuracy is found: `scratch` trains each network for `training.epochs`;
    # `supernet` reads it from one weight-sharing supernet trained once (evaluators/supernet.py),
    # a trial then costs seconds. Either way latency is measured on the target for every network.
    evaluation: Literal["scratch", "supernet"] = "scratch"
    supernet: SupernetConfig = Field(default_factory=SupernetConfig)
    # How long each trial trains: `none` trains every network for `training.epochs` (early stopping
    # may end it sooner); `asha` trains new networks for `asha.min_epochs` and continues the best
    # 1/eta of each rung from their checkpoints, up to `training.epochs` (search/scheduling.py).
    schedule: Literal["none", "asha"] = "none"
    asha: AshaSection = Field(default_factory=AshaSection)
    # Finalists: once the trials are done, the front is trained again from scratch for
    # `final_epochs` (null: training.epochs), at most `finalists` networks, and the reference
    # architectures are trained for the same epochs; the reported front is made of finalists.
    # With scratch evaluation and final_epochs null the trials already are at the final budget.
    final_epochs: float | None = Field(None, gt=0, le=1000)
    finalists: int = Field(8, ge=1, le=1000)
    # None keeps the study in <results>/optuna.journal; an Optuna RDB URL (postgresql://...,
    # sqlite:///...) keeps it in that database, where several drivers and tools can reach it.
    storage: str | None = None
    # None records MLflow runs in <results>/mlflow.db; a tracking URI (an `mlflow server`, e.g.
    # http://127.0.0.1:5000, whose backend store may be PostgreSQL) records them there instead.
    tracking_uri: str | None = None
    objectives: tuple[str, ...] = Field(("accuracy", "latency_ms", "energy_uj"), min_length=1, max_length=6)
    # Reference point of the hypervolume, one value per objective, in the objective's own units.
    # It is fixed (not derived from the trials) so that hypervolumes of different runs compare.
    hypervolume_reference: dict[str, float] = Field(
        default_factory=lambda: {"accuracy": 0.0, "latency_ms": 10.0, "energy_uj": 100.0})
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    latency: LatencySection = Field(default_factory=LatencySection)
    # A profile shipped in evaluators/energy_profiles/ by name, or the path of your own YAML profile.
    energy_profile: str = "horowitz45nm"
    # auto: measure energy with the CPU package's RAPL counter where one is readable (and say so);
    # off: always the analytic estimate.
    energy_meter: Literal["auto", "off"] = "auto"
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    constraints: ConstraintsSection = Field(default_factory=ConstraintsSection)
    # The largest network bitnas will build (estimated from the genotype before anything is built):
    # a sampled network over it fails as a trial, in one line, without using the memory it asks for.
    budget: ResourceBudget = Field(default_factory=ResourceBudget)
    ray: RaySection = Field(default_factory=RaySection)
    footprint: FootprintSection = Field(default_factory=FootprintSection)
    # How often a trial whose worker died (killed, out of memory, node lost) is run again.
    retries: int = Field(2, ge=0, le=100)
    # Python modules imported by the driver and by every worker before anything else, so that
    # blocks or quantizers they register (bitnas.spaces.register_block) can be named in `space`.
    plugins: tuple[str, ...] = ()
    # Small hand-designed networks evaluated once per study like any trial and shown next to the
    # front (bitnas.spaces.baselines); [] to skip them.
    # Three by default (two binary designs and an 8-bit one), each also the start of the local search
    # below, few enough to keep the default search within 5 minutes on two cores; list more (any of
    # SMALL_BASELINES) for a fuller comparison. reactnet_small is the one no front had dominated
    # before its neighbours were queued: benchmarks/search_quality.py --tag box chose these three.
    references: tuple[str, ...] = ("bireal_small", "mobilenetv2_int8_small", "reactnet_small")
    # A new study's first trials: up to this many one-step neighbours of each reference that the
    # space can express, cheaper than it by the analytic cost model (search/neighbours.py: a local
    # search from the hand design); 0 leaves every trial to the sampler.
    reference_neighbours: int = Field(4, ge=0, le=1000)
    # Then up to this many of each reference's pooled twin grown back by one or two parameters,
    # still cheaper than it (search/neighbours.py `grown_twins`); 0: none. Off by default: two per
    # reference did no better than none in benchmarks/search_quality.py --tag pool (references
    # dominated 6/7/6/7/5 of 7 against 6/7/6/7/6, box hypervolume 1.25x random's against 1.31x),
    # their trials taken from random search; against the references trained at each study's seed
    # they dominated all 7 in 4 of 5 seeds (pool-scratch's studies were not kept to be judged so).
    grown_neighbours: int = Field(0, ge=0, le=1000)
    max_failures: int = Field(5, ge=0, le=100_000)

    @field_validator("study")
    @classmethod
    def _study_name(cls, value: str) -> str:
        if not STUDY_NAME.match(value):
            raise ValueError("must be 1-100 letters, digits, '_', '.' or '-', starting with a letter or digit")
        return value

    @field_validator("objectives")
    @classmethod
    def _known_objectives(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in OBJECTIVES:
                raise ValueError(f"unknown objective {name!r}; known: {', '.join(OBJECTIVES)}")
        if len(set(value)) != len(value):
            raise ValueError("an objective is listed twice")
        return value

    @model_validator(mode="after")
    def _reference_for_each_objective(self) -> SearchConfig:
        missing = [name for name in self.objectives if name not in self.hypervolume_reference]
        if missing:
            raise ValueError(f"hypervolume_reference has no value for objective {missing[0]!r}")
        return self

    @model_validator(mode="after")
    def _asha_makes_sense(self) -> SearchConfig:
        if self.schedule != "asha":
            return self
        if self.evaluation != "scratch":
            raise ValueError("schedule asha needs evaluation scratch (a supernet score has no epochs to schedule)")
        if self.asha.min_epochs >= self.training.epochs:
            raise ValueError(f"asha.min_epochs ({self.asha.min_epochs:g}) must be below training.epochs "
                             f"({self.training.epochs:g}), the top rung")
        return self

    @field_validator("references")
    @classmethod
    def _known_references(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in BASELINES]
        if unknown:
            raise ValueError(f"unknown reference {unknown[0]!r}; known: {', '.join(SMALL_BASELINES)}")
        return value

    @field_validator("energy_profile")
    @classmethod
    def _energy_profile(cls, value: str) -> str:
        from bitnas.evaluators.energy import load_profile

        load_profile(value)  # raises a one-line EnergyProfileError naming what is wrong
        # A profile given by path is read by the workers too, whose working directory is not the
        # driver's: keep it absolute.
        return str(Path(value).resolve()) if Path(value).suffix else value

    @field_validator("results")
    @classmethod
    def _results_directory(cls, value: str) -> str:
        problem = directory_problem(value)  # a file, read-only, or under /proc: one line
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: str | None) -> str | None:
        # Workers read the data too, and their working directory is not the driver's.
        return str(Path(value).expanduser().resolve()) if value else value

    @model_validator(mode="after")
    def _data_dir_for_local_datasets(self) -> SearchConfig:
        if self.dataset in ("cifar10", "imagefolder") and not self.data_dir:
            raise ValueError(f"dataset {self.dataset} needs data_dir (the directory to read it from)")
        return self

    @field_validator("storage")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(postgresql|postgresql\+\w+|mysql\+?\w*|sqlite)://", value):
            raise ValueError("must be an Optuna RDB URL such as postgresql://user@host:5432/db or sqlite:///path.db")
        return value

    @field_validator("tracking_uri")
    @classmethod
    def _tracking_uri(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?://|sqlite:///|postgresql(\+\w+)?://|mysql(\+\w+)?://|file:)", value):
            raise ValueError("must be an MLflow tracking URI such as http://127.0.0.1:5000 or sqlite:///path/mlflow.db")
        return value

    @property
    def final_training(self) -> TrainingConfig:
        """The training of finalists and reference architectures."""
        if self.final_epochs is None:
            return self.training
        return self.training.model_copy(update={"epochs": self.final_epochs})

    @property
    def has_finalists(self) -> bool:
        # One-shot scores and ASHA's lower rungs are not the final budget's accuracy (a network
        # stopped at rung 0 can be on the trials' front): their front is retrained.
        return self.evaluation == "supernet" or self.schedule == "asha" or (
            self.final_epochs is not None and self.final_epochs != self.training.epochs)

    @property
    def results_dir(self) -> Path:
        return Path(self.results)


MAX_CONFIG_BYTES = 1 << 20

# Flags that override config keys: flag destination -> dotted key.
FLAG_KEYS = {"study": "study", "trials": "trials", "time_budget_s": "time_budget_s", "epochs": "training.epochs", "workers": "workers",
             "seed": "seed", "results": "results", "storage": "storage", "sampler": "sampler",
             "schedule": "schedule",
             "ray_address": "ray.address", "tracking_uri": "tracking_uri"}


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file ({error.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"{path}: unreadable value ({str(error).splitlines()[0][:120]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values, not {type(data).__name__}")
    return data


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        node = target.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"config: {part} must be a mapping")
        target = node
    target[last] = value


def import_plugins(names: Any, source: str = "") -> None:
    """Import the user's plugin modules (they register blocks); one line naming a failure."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{source}plugins: must be a list of module names")
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - any failure of the user's module is reported as one line
            raise ConfigError(f"{source}plugins: cannot import {name!r} ({type(error).__name__}: {error})") from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> SearchConfig:
    """Defaults <- YAML file <- flag overrides (flag destination names, see FLAG_KEYS)."""
    data: dict[str, Any] = _read_yaml(Path(path)) if path is not None else {}
    for flag, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, FLAG_KEYS[flag], value)
    # Before validation: the space may name blocks that only the plugins register.
    import_plugins(data.get("plugins", []), f"{path}: " if path is not None else "")
    try:
        return SearchConfig.model_validate(data)
    except ValidationError as error:
        source = f"{path}: " if path is not None else ""
        raise ConfigError(source + describe_validation_error(error, "")) from None


def defaults_as_yaml() -> str:
    """The embedded defaults as YAML (configs/default.yaml is this, with comments)."""
    return yaml.safe_dump(SearchConfig().model_dump(mode="json"), sort_keys=False)
