"""bitnas.evaluators: datasets, training, latency and energy. Uses `spaces`, never `search`."""

from .data import Dataset, DatasetError, Split, dataset_names, load_dataset
from .energy import PROFILES, EnergyEstimate, estimate_energy
from .evaluate import EvalRequest, TrialResult, evaluate
from .latency import LatencyConfig, LatencyMeasurement, measure_latency
from .train import TrainingConfig, accuracy, train

__all__ = [
    "PROFILES", "Dataset", "DatasetError", "EnergyEstimate", "EvalRequest", "LatencyConfig",
    "LatencyMeasurement", "Split", "TrainingConfig", "TrialResult", "accuracy", "dataset_names",
    "estimate_energy", "evaluate", "load_dataset", "measure_latency", "train",
]
