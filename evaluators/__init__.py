"""bitnas.evaluators: datasets, training, latency and energy. Uses `spaces`, never `search`."""

from .data import DataOptions, Dataset, DatasetError, Split, dataset_names, load_dataset
from .distill import Teacher, distributional_loss, load_or_train_teacher
from .early_stopping import EarlyStoppingRule
from .energy import PROFILES, EnergyEstimate, estimate_energy
from .evaluate import EvalRequest, TrialResult, evaluate
from .latency import LatencyConfig, LatencyMeasurement, measure_latency
from .train import TrainingConfig, accuracy, train

__all__ = [
    "PROFILES", "DataOptions", "Dataset", "EarlyStoppingRule", "Teacher", "distributional_loss",
    "load_or_train_teacher", "DatasetError", "EnergyEstimate", "EvalRequest", "LatencyConfig",
    "LatencyMeasurement", "Split", "TrainingConfig", "TrialResult", "accuracy", "dataset_names",
    "estimate_energy", "evaluate", "load_dataset", "measure_latency", "train",
]
