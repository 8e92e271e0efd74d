"""One-shot evaluation: a weight-sharing supernet over the whole space, trained once, from which
each sampled network takes its weights, recalibrates its BatchNorm and is validated in seconds.

How it is trained (and why):
- **Sandwich rule** (BigNAS, Once-for-All, NAS-BNN): every step trains the largest network, the
  smallest and `random_subnets` drawn as the random sampler draws them, gradients summed over them
  before one optimiser step. The largest and smallest bound the space, so every shared tensor is
  trained at both ends of its width; random ones cover the rest.
- **In-place distillation** from the largest path: it alone learns the labels; every other
  network of the step learns its soft predictions (ReActNet's distributional loss). The largest
  network is the space's most precise one (per stage the block with the most bits, at the largest
  width, depth and kernel): in a binary space it is the widest binary network, in the default one
  a full-precision CNN, so the binary subnets learn from a better network than themselves, at no
  extra cost (its forward pass is in the step anyway).
- **Binary recipe**: Adam without weight decay, warm-up then cosine, gradient clipping, latent
  weights of 1-bit kernels clipped to [-1, 1] (evaluators/train.py explains each).
- **BatchNorm recalibrated per subnet** before validation (`bn_images` training images), since
  the shared running statistics describe a mix of all networks trained; each bit width has its
  own BN (spaces/weight_sharing.py).
- **A brief fine-tune per subnet** (`finetune_steps`, 25) before that: the sliced weights alone
  ranked 30 default-space networks at Kendall tau 0.41-0.66 against training from scratch, with
  the steps 0.83-0.90 (benchmarks/supernet_fidelity.py, which also scores the same steps from a
  random initialisation: 0.83, so the shared weights are mostly a warm start).

The trained weights are cached under <results>/supernets/, keyed by (space, geometry, dataset,
data options, seed, supernet and training settings): a study run again, or another study of the
same space, reuses them.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn
from torch.func import functional_call

from bitnas.spaces import Genotype, build_model
from bitnas.spaces.space import SpaceConfig
from bitnas.spaces.weight_sharing import SWITCHABLE_NORMS, SharedLayout, WeightSharingError, slices_for, tensor_keys

from .data import Split
from .distill import distributional_loss
from .settings import SupernetConfig, TrainingConfig
from .train import _warmup_cosine, accuracy, recalibrate_batchnorm

SUPERNET_VERSION = 1


@dataclass(frozen=True)
class SharedWeights:
    """A trained supernet as data (it travels to Ray workers once, through the object store)."""

    weights: bytes          # safetensors: shared key -> tensor at its largest shape
    digest: str             # cache key: what it was trained on and how
    seconds: float          # training time (0 when read from the cache)
    steps: int
    largest_val_accuracy: float

    def tensors(self) -> dict[str, torch.Tensor]:
        cached = _PARSED.get(self.digest)
        if cached is None:
            _PARSED.clear()  # one supernet per worker process at a time
            cached = _PARSED[self.digest] = safetensors_load(self.weights)
        return cached


_PARSED: dict[str, dict[str, torch.Tensor]] = {}


def subnet_state(genotype: Genotype, model: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`model`'s state-dict entries as views of the shared tensors (gradients reach the store)."""
    state = {}
    wanted = model.state_dict()
    for name, key in tensor_keys(genotype, model).items():
        stored = tensors.get(key)
        if stored is None:
            raise WeightSharingError(f"the supernet has no tensor {key!r} (network outside the space it was trained on)")
        state[name] = stored[slices_for(tuple(stored.shape), tuple(wanted[name].shape), key)]
    return state


def load_subnet(genotype: Genotype, shared: SharedWeights) -> nn.Module:
    """A stand-alone network of the space with its weights copied out of the supernet."""
    model = build_model(genotype)
    state = subnet_state(genotype, model, shared.tensors())
    model.load_state_dict({name: tensor.clone() for name, tensor in state.items()})
    return model


def evaluate_subnet(model: nn.Module, train: Split, val: Split, config: SupernetConfig, seed: int,
                    training: TrainingConfig | None = None) -> float:
    """Validation accuracy of a network loaded from the supernet: first fine-tuned for
    `config.finetune_steps` steps of `training`'s recipe (when given), its BatchNorm recalibrated on
    `config.bn_images` training images drawn with `seed`."""
    if config.finetune_steps and training is not None:
        from .train import train as train_network

        steps_per_epoch = math.ceil(len(train) / training.batch_size)
        brief = training.model_copy(update={"epochs": config.finetune_steps / steps_per_epoch, "two_step": False,
                                            "distill": False, "bn_recalibration": config.bn_images,
                                            "warmup_epochs": 0.0})
        return train_network(model, train, val, brief, seed=seed).epoch_val_accuracy[-1]
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:config.bn_images]
    recalibrate_batchnorm(model, train.images[order])
    return accuracy(model, val)


# --- which networks a step trains ---------------------------------------------------------------
def _precision(space: SpaceConfig, block: str) -> tuple[int, int]:
    from bitnas.spaces.blocks import BLOCK_INFO

    info = BLOCK_INFO[block]
    weight = [b for b in space.weight_bits if b in info.weight_bits] or list(info.weight_bits[:1])
    activation = [b for b in space.activation_bits if b in info.activation_bits] or list(info.activation_bits[:1])
    return max(weight), max(activation)


def extreme_params(space: SpaceConfig, largest: bool, rng: random.Random) -> dict:
    """Choices of the largest network (per stage the most precise block, every size at its
    largest) or of a smallest one (a random block at its fewest bits, every size at its smallest)."""
    pick = max if largest else min
    params = {}
    for name, values in space.choices().items():
        if name.endswith("_block"):
            if largest:  # the most precise block; the first listed among equals
                params[name] = max(values, key=lambda block: (sum(_precision(space, block)), -values.index(block)))
            else:
                params[name] = rng.choice(values)
        elif name in ("stem_stride", "stem_pool") or name.endswith("_groups"):
            params[name] = min(values) if largest else max(values)  # downsampling early shrinks a network
        elif name.endswith("_downsample"):
            params[name] = values[0]
        else:  # widths, depths, kernels, bits, expansion, squeeze-excitation
            params[name] = pick(values)
    return params


def random_params(space: SpaceConfig, rng: random.Random) -> dict:
    return {name: rng.choice(values) for name, values in space.choices().items()}


# --- training -----------------------------------------------------------------------------------
@dataclass
class SupernetProgress:
    step: int
    steps: int
    loss: float
    seconds: float


def supernet_digest(space: SpaceConfig, geometry: dict, dataset: str, data_options: object, seed: int,
                    config: SupernetConfig, training: TrainingConfig) -> str:
    blob = json.dumps({"version": SUPERNET_VERSION, "switchable_norms": SWITCHABLE_NORMS, "space": space.model_dump(mode="json"), "geometry": geometry,
                       "dataset": dataset, "options": repr(data_options), "seed": seed,
                       # what shapes the weights; how a subnet is scored from them is not part of it
                       "supernet": config.model_dump(mode="json", include={"epochs", "random_subnets",
                                                                           "inplace_distillation"}),
                       "training": training.model_dump(mode="json", include={"batch_size", "lr", "warmup_epochs",
                                                                            "grad_clip", "latent_clip", "augment"})},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def train_supernet(space: SpaceConfig, geometry: dict, train_split: Split, val_split: Split, config: SupernetConfig,
                   training: TrainingConfig, *, seed: int, digest: str = "",
                   progress: Callable[[SupernetProgress], None] | None = None) -> SharedWeights:
    """Train the space's supernet (module docstring); `progress` is called every few steps."""
    from .train import _augment

    started = time.perf_counter()
    layout = SharedLayout.of(space, **geometry)
    tensors = {key: value.requires_grad_(value.is_floating_point() and "running_" not in key
                                         and "num_batches" not in key)
               for key, value in layout.initial_tensors(seed).items()}
    trained = [value for value in tensors.values() if value.requires_grad]
    clipped = [tensors[key] for key in layout.binary_kernels if key in tensors]
    optimiser = torch.optim.Adam(trained, lr=training.lr)
    steps_per_epoch = math.ceil(len(train_split) / training.batch_size)
    total = max(1, math.ceil(config.epochs * steps_per_epoch))
    warmup = max(1, min(total // 4, int(round(training.warmup_epochs * steps_per_epoch))))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, _warmup_cosine(total, warmup))
    rng, generator = random.Random(seed), torch.Generator().manual_seed(seed)
    modules: dict[str, nn.Module] = {}

    def network(params: dict) -> tuple[Genotype, nn.Module]:
        genotype = space.decode(params, **geometry)
        key = genotype.hash()
        if key not in modules:
            if len(modules) > 256:
                modules.clear()
            with torch.device("meta"):  # shapes only: every tensor comes from the store
                modules[key] = build_model(genotype).train()
        return genotype, modules[key]

    step, loss_value = 0, float("nan")
    while step < total:
        order = torch.randperm(len(train_split), generator=generator)
        for start in range(0, len(order), training.batch_size):
            batch = order[start:start + training.batch_size]
            images = _augment(train_split.images[batch], training.augment, generator)
            labels = train_split.labels[batch]
            optimiser.zero_grad(set_to_none=True)
            sandwich = [extreme_params(space, True, rng), extreme_params(space, False, rng)]
            sandwich += [random_params(space, rng) for _ in range(config.random_subnets)]
            soft, losses = None, []
            for params in sandwich:
                genotype, model = network(params)
                logits = functional_call(model, subnet_state(genotype, model, tensors), (images,))
                if soft is None or not config.inplace_distillation:
                    loss = F.cross_entropy(logits, labels)
                else:
                    loss = distributional_loss(logits, soft)
                if soft is None:
                    soft = logits.detach()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"supernet training diverged: loss {loss.item()} at step {step} "
                                             f"({genotype.short()})")
                loss.backward()
                losses.append(loss.item())
            if training.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(trained, training.grad_clip)
            optimiser.step()
            schedule.step()
            with torch.no_grad():
                for weight in clipped:
                    weight.clamp_(-training.latent_clip, training.latent_clip)
            step += 1
            loss_value = losses[0]
            if progress is not None and (step % 10 == 0 or step == total):
                progress(SupernetProgress(step, total, loss_value, time.perf_counter() - started))
            if step >= total:
                break
    stored = {key: value.detach().contiguous() for key, value in tensors.items()}
    largest = space.decode(extreme_params(space, True, rng), **geometry)
    shared = SharedWeights(safetensors_save(stored), digest, time.perf_counter() - started, step, 0.0)
    score = evaluate_subnet(load_subnet(largest, shared), train_split, val_split, config, seed)
    return SharedWeights(shared.weights, digest, shared.seconds, step, score)


def cache_path(results_dir: str | Path, digest: str) -> Path:
    return Path(results_dir) / "supernets" / f"{digest}.safetensors"


def read_cached(results_dir: str | Path, digest: str) -> SharedWeights | None:
    """The cached supernet of this digest, or None (a damaged file is trained again, not trusted)."""
    path = cache_path(results_dir, digest)
    meta = path.with_suffix(".json")
    if not path.is_file() or not meta.is_file():
        return None
    try:
        info = json.loads(meta.read_text())
        weights = path.read_bytes()
        if hashlib.sha256(weights).hexdigest() != info["sha256"]:
            return None
        safetensors_load(weights)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return SharedWeights(weights, digest, 0.0, int(info["steps"]), float(info["largest_val_accuracy"]))


def write_cache(results_dir: str | Path, shared: SharedWeights) -> Path:
    """Written to temporary names and renamed, so that a crash never leaves half a supernet."""
    path = cache_path(results_dir, shared.digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"sha256": hashlib.sha256(shared.weights).hexdigest(), "steps": shared.steps,
            "seconds": shared.seconds, "largest_val_accuracy": shared.largest_val_accuracy,
            "version": SUPERNET_VERSION}
    for target, data in ((path, shared.weights), (path.with_suffix(".json"), json.dumps(meta, indent=1).encode())):
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(data)
        partial.replace(target)
    return path


@dataclass(frozen=True)
class SupernetSpec:
    """Which supernet a study evaluates with, as data the Ray task receives."""

    results_dir: str
    space: SpaceConfig
    geometry: dict
    dataset: str
    data_seed: int
    options: object
    seed: int
    config: SupernetConfig
    training: TrainingConfig
    threads: int

    def digest(self) -> str:
        return supernet_digest(self.space, self.geometry, self.dataset, self.options, self.seed, self.config,
                               self.training)

    def load_or_train(self) -> Iterator[SupernetProgress | SharedWeights]:
        """Progress records while training, then the weights (read from the cache when there)."""
        from .data import load_dataset

        digest = self.digest()
        cached = read_cached(self.results_dir, digest)
        if cached is not None:
            yield cached
            return
        torch.set_num_threads(self.threads)
        data = load_dataset(self.dataset, self.data_seed, self.options)
        updates: list[SupernetProgress] = []
        # train_supernet reports through a callback; a generator hands those reports on as they come.
        import threading

        done: dict = {}

        def work() -> None:
            try:
                done["weights"] = train_supernet(self.space, self.geometry, data.train, data.val, self.config,
                                                 self.training, seed=self.seed, digest=digest,
                                                 progress=updates.append)
            except BaseException as error:  # noqa: BLE001 - re-raised in the generator below
                done["error"] = error

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        while thread.is_alive() or updates:
            thread.join(timeout=1.0)
            while updates:
                yield updates.pop(0)
        if "error" in done:
            raise done["error"]
        write_cache(self.results_dir, done["weights"])
        yield done["weights"]
