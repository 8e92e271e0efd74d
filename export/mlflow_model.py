"""The exported packed model as an MLflow pyfunc model: what `models:/NAME/<version>` loads and
`mlflow models serve` runs. It classifies with the packed binary engine (`model.bitnas.npz`), the
same file and arithmetic as `bitnas run`, on images already preprocessed as the export expects
(float32, N x C x H x W, normalised with the training split's statistics: see `preprocess.py`).

Output: one row per image: `class` (the class name), `class_index`, and `prob_<name>` for every
class (softmax of the logits), so a client gets the decision and its confidence in one answer."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

EXPORT_ARTIFACT = "export"  # the key, in the logged model's artefacts, of the export folder


def class_names_of(header: dict) -> list[str]:
    names = (header.get("preprocessing") or {}).get("class_names")
    if names:
        return [str(name) for name in names]
    # A packed model saved without preprocessing still has its classes: the logits' width.
    return [str(index) for index in range(int(header["genotype"]["num_classes"]))]


def output_columns(class_names: list[str]) -> list[str]:
    return ["class", "class_index", *(f"prob_{name}" for name in class_names)]


def signature(input_shape: tuple[int, int, int], class_names: list[str]):
    """Input: one unnamed float32 tensor (-1, C, H, W); output: the columns `predict` returns."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    outputs = [ColSpec("string", "class"), ColSpec("long", "class_index"),
               *(ColSpec("double", f"prob_{name}") for name in class_names)]
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *input_shape))]),
                          outputs=Schema(outputs))


class PackedEngineModel(mlflow.pyfunc.PythonModel):
    """Loads `model.bitnas.npz` from the logged export folder once, then classifies batches."""

    def load_context(self, context) -> None:
        from .packed_model import load_packed_model

        self.engine, header = load_packed_model(Path(context.artifacts[EXPORT_ARTIFACT]))
        self.class_names = class_names_of(header)

    # np.ndarray as the hint: MLflow then validates the input against the logged signature (a
    # TensorSpec) and infers nothing from the hint.
    def predict(self, context, model_input: np.ndarray, params=None) -> pd.DataFrame:
        images = np.asarray(model_input, dtype=np.float32)
        columns = output_columns(self.class_names)
        if images.ndim == 4 and images.shape[0] == 0:
            return pd.DataFrame(columns=columns)
        # The engine refuses any other shape in one line that names the expected (C, H, W).
        logits = np.asarray(self.engine(images), dtype=np.float64).reshape(-1, len(self.class_names))
        probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        best = probabilities.argmax(axis=1)
        frame = pd.DataFrame(probabilities, columns=columns[2:])
        frame.insert(0, "class_index", best.astype(np.int64))
        frame.insert(0, "class", [self.class_names[int(i)] for i in best])
        return frame
