"""bitnas.evaluators: datasets, training, latency and energy. Uses `spaces`, never `search`.

Names are imported on first use, so `bitnas.evaluators.settings` (what a config validates
against) and `bitnas.evaluators.energy` load without torch. The functions `train` and `evaluate`
share their modules' names, so they are imported from them (`from bitnas.evaluators.train import
train`): once a submodule is imported, the package attribute of that name is the module.
"""

from bitnas.lazy import lazy_namespace

# public name -> submodule that defines it
_EXPORTS = {
    "DataOptions": "settings", "DataSettings": "settings", "EarlyStoppingRule": "settings",
    "LatencyConfig": "settings", "TrainingConfig": "settings",
    "Dataset": "data", "DatasetError": "data", "Split": "data", "dataset_names": "data", "load_dataset": "data",
    "Teacher": "distill", "distributional_loss": "distill", "load_or_train_teacher": "distill",
    "PROFILES": "energy", "EnergyEstimate": "energy", "estimate_energy": "energy",
    "EvalRequest": "evaluate", "TrialResult": "evaluate",
    "LatencyMeasurement": "latency", "measure_latency": "latency",
    "accuracy": "train",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_namespace(__name__, globals(), _EXPORTS)
