"""Knowledge distillation: a full-precision teacher and ReActNet's distributional loss.

The loss (Liu et al., ReActNet, ECCV 2020, eq. 5) is the cross-entropy between the teacher's
softmax and the student's log-softmax, averaged over the batch:

    L = -1/n * sum_i sum_c p_teacher(c | x_i) * log p_student(c | x_i)

It needs no labels: the binary student learns the teacher's whole distribution, which carries
more than the one-hot label (which classes look alike), and that is what lets a binary network
close most of the gap to its real-valued twin.

The teacher is trained once per (dataset, seed, data options) with the standard recipe and
cached under `<results>/teachers/` as safetensors (never pickle) next to its genotype.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from bitnas.spaces import Genotype, build_model


def distributional_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_c softmax(teacher)_c * log_softmax(student)_c."""
    soft_targets = F.softmax(teacher_logits.detach(), dim=1)
    return -(soft_targets * F.log_softmax(student_logits, dim=1)).sum(dim=1).mean()


def teacher_genotype(input_size: int, in_channels: int, num_classes: int) -> Genotype:
    """A plain full-precision CNN, wider than anything in the default space, so it is a teacher
    worth learning from, yet cheap (about 33M MACs per 28x28 image: widths double as the maps halve).
    Two convs per stage, not one: on mnist5k (seed 0, 12 epochs, TEACHER_TRAINING, AVX2 EPYC) one
    conv per stage reached 0.975 test (0.963 val), two reached 0.988 (0.987 val) in 2.5x the time
    (184 s on one thread); the binary students reach 0.97, so a teacher must be clearly above that."""
    stages = [dict(block="float", width=w, depth=d, stride=s) for w, d, s in ((32, 2, 1), (64, 2, 2), (128, 2, 2))]
    return Genotype.from_dict(dict(input_size=input_size, in_channels=in_channels, num_classes=num_classes,
                                   stem_width=16, stages=stages))


@dataclass(frozen=True)
class Teacher:
    """A trained teacher as data (it travels to Ray workers): genotype JSON, safetensors bytes."""

    genotype_json: str
    weights: bytes
    val_accuracy: float
    test_accuracy: float

    def model(self) -> torch.nn.Module:
        model = build_model(Genotype.from_json(self.genotype_json))
        model.load_state_dict(safetensors_load(self.weights))
        return model.eval()


# How a teacher is trained: with shifts and small rotations the one-conv-per-stage teacher went from
# 0.959 test on mnist5k (8 epochs, no augmentation) to 0.975-0.980 (12 epochs, by CPU).
TEACHER_TRAINING = dict(batch_size=64, lr=3e-3, recipe="standard", augment="shift_rotate")


def _cache_key(dataset: str, seed: int, epochs: float, options: object) -> str:
    # The architecture is part of the key: a cache written before teacher_genotype changed is not reused.
    architecture = teacher_genotype(28, 1, 10).to_json()
    blob = json.dumps({"dataset": dataset, "seed": seed, "epochs": epochs, "options": repr(options),
                       "training": TEACHER_TRAINING, "architecture": architecture}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_or_train_teacher(results_dir: str | Path, dataset: str, seed: int, *, epochs: float = 5.0,
                          options: object = None, threads: int | None = None) -> Teacher:
    """The cached teacher for (dataset, seed, options), trained and cached first if absent."""
    from .data import DataOptions, load_dataset
    from .train import TrainingConfig, accuracy, train

    options = options if options is not None else DataOptions()
    folder = Path(results_dir) / "teachers"
    stem = f"{dataset}-seed{seed}-{_cache_key(dataset, seed, epochs, options)}"
    weights_path, meta_path = folder / f"{stem}.safetensors", folder / f"{stem}.json"
    if weights_path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        return Teacher(json.dumps(meta["genotype"]), weights_path.read_bytes(), meta["val_accuracy"], meta["test_accuracy"])
    data = load_dataset(dataset, seed, options)
    genotype = teacher_genotype(data.input_size, data.in_channels, data.num_classes)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = build_model(genotype)
    train(model, data.train, data.val, TrainingConfig(epochs=epochs, **TEACHER_TRAINING), seed=seed)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    weights = safetensors_save(state)
    teacher = Teacher(genotype.to_json(), weights, accuracy(model, data.val), accuracy(model, data.test))
    folder.mkdir(parents=True, exist_ok=True)
    # Written under temporary names, then renamed: a crash never leaves half a teacher in the cache.
    for path, content in ((weights_path, weights), (meta_path, json.dumps(
            {"genotype": genotype.to_dict(), "val_accuracy": teacher.val_accuracy,
             "test_accuracy": teacher.test_accuracy, "epochs": epochs, "dataset": dataset, "seed": seed}).encode())):
        scratch = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
        scratch.write_bytes(content)
        scratch.replace(path)
    return teacher
