"""Knowledge distillation: ReActNet's distributional loss on hand-computed values, and the cached
full-precision teacher (safetensors, trained once per dataset and seed)."""

import math

import torch
from safetensors.torch import load_file

from bitnas.evaluators import (DataOptions, TrainingConfig, accuracy, distributional_loss, load_dataset,
                               load_or_train_teacher)
from bitnas.evaluators.train import train
from bitnas.spaces import Genotype, StageSpec, build_model


def test_distributional_loss_on_hand_computed_values():
    # Row 1: teacher softmax of (0, ln 3) = (1/4, 3/4); student log-softmax of (0, 0) = (-ln 2, -ln 2):
    #        loss = 1/4 ln 2 + 3/4 ln 2 = ln 2.
    # Row 2: teacher (0, 0) -> (1/2, 1/2); student (0, ln 3) -> log(1/4), log(3/4):
    #        loss = -(1/2 ln 1/4 + 1/2 ln 3/4) = 0.5 (ln 4 + ln 4/3).
    student = torch.tensor([[0.0, 0.0], [0.0, math.log(3)]], requires_grad=True)
    teacher = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]], requires_grad=True)
    row1, row2 = math.log(2), 0.5 * (math.log(4) + math.log(4 / 3))
    loss = distributional_loss(student, teacher)
    assert abs(loss.item() - (row1 + row2) / 2) < 1e-6
    loss.backward()
    # d loss / d student logits = (softmax(student) - softmax(teacher)) / batch; the teacher gets nothing.
    expected = torch.tensor([[0.5 - 0.25, 0.5 - 0.75], [0.25 - 0.5, 0.75 - 0.5]]) / 2
    assert torch.allclose(student.grad, expected, atol=1e-6)
    assert teacher.grad is None


def test_distributional_loss_equals_cross_entropy_for_a_one_hot_teacher():
    student = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 1, 2, 3])
    confident = 1e4 * torch.nn.functional.one_hot(labels, 4).float()
    assert torch.allclose(distributional_loss(student, confident), torch.nn.functional.cross_entropy(student, labels))


def test_teacher_is_trained_once_cached_as_safetensors_and_reloads(tmp_path):
    torch.set_num_threads(1)
    first = load_or_train_teacher(tmp_path, "digits", 0, epochs=1)
    cached = list((tmp_path / "teachers").iterdir())
    assert sorted(p.suffix for p in cached) == [".json", ".safetensors"]
    weights = next(p for p in cached if p.suffix == ".safetensors")
    assert load_file(weights)  # plain safetensors, no pickle
    mtime = weights.stat().st_mtime_ns
    second = load_or_train_teacher(tmp_path, "digits", 0, epochs=1)
    assert weights.stat().st_mtime_ns == mtime and second.weights == first.weights
    data = load_dataset("digits", 0, DataOptions())
    assert first.val_accuracy > 0.8 and accuracy(second.model(), data.val) == first.val_accuracy
    # another seed is another teacher
    load_or_train_teacher(tmp_path, "digits", 1, epochs=0.2)
    assert len(list((tmp_path / "teachers").glob("*.safetensors"))) == 2


def test_training_with_a_teacher_uses_its_soft_labels(tmp_path):
    torch.set_num_threads(1)
    teacher = load_or_train_teacher(tmp_path, "digits", 0, epochs=1)
    data = load_dataset("digits", 0)
    student = Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=8,
                       stages=(StageSpec(block="binary", width=16, depth=1, stride=2),))
    runs = []
    for t in (teacher.model(), None):
        torch.manual_seed(0)
        model = build_model(student)
        runs.append(train(model, data.train, data.val, TrainingConfig(epochs=1, batch_size=32, lr=5e-3),
                          seed=0, teacher=t))
    # Same seed, same batches: only the loss differs, so the runs must differ.
    assert runs[0].final_loss != runs[1].final_loss and runs[0].epoch_val_accuracy[-1] > 0.15  # chance is 0.1


def test_a_changed_teacher_architecture_is_not_served_from_an_old_cache(monkeypatch):
    from bitnas.evaluators import distill
    before = distill._cache_key("digits", 0, 1.0, DataOptions())
    current = distill.teacher_genotype

    def shallower(*shape):
        genotype = current(*shape).to_dict()
        for stage in genotype["stages"]:
            stage["depth"] = 1
        return Genotype.from_dict(genotype)

    monkeypatch.setattr(distill, "teacher_genotype", shallower)
    assert distill._cache_key("digits", 0, 1.0, DataOptions()) != before
