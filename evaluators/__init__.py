"""bitnas.evaluators: datasets, training, latency and energy. Uses `spaces`, never `search`.

Names are imported on first use, so `bitnas.evaluators.settings` (what a config validates
against) and `bitnas.evaluators.energy` load without torch. The functions `train` and `evaluate`
share their modules' names, so they are imported from them (`from bitnas.evaluators.train import
train`): once a submodule is imported, the package attribute of that name is the module.
"""

from importlib import import_module

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


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value
