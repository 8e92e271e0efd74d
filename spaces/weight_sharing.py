"""Weight sharing across a space: where each tensor of any sampled network lives in one store.

A one-shot supernet (evaluators/supernet.py) keeps one tensor per *key*, large enough for every
network of the space that uses it; a network of the space reads its weights as slices of them:
the first `w` output and input channels, the first `d` blocks of a stage, the centre of a larger
kernel (Once-for-All's elastic width, depth and kernel). Keys:

    stem.<param>                      shared by every stem width
    s<i>.<block>[<options>].<j>.<param>   block j of stage i, one set per block kind and options
    head.<param>, fc.<param>

Block kinds never share (a Bi-Real conv and a depthwise conv mean different things); bit widths
share the latent weights (one real-valued kernel behind its 1, 2, 4 and 8-bit versions, as
multi-precision supernets do) but each bit width keeps its own quantizer parameters and its own
BatchNorm (`@W<w>A<a>`: "switchable" BN, since each precision gives its own activation statistics).

`SharedLayout.of(space, geometry)` enumerates every block configuration the space allows (built
on torch's meta device: shapes only, no memory) to find each key's largest shape. Dense blocks
(binary_dense, melius) regrow their channel plan with the width and are refused.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import nn

from bitnas.errors import UserError

from .blocks import BLOCK_INFO, BLOCKS
from .builder import _block_kwargs, build_model, stage_plan
from .genotype import Genotype, StageSpec
from .space import SpaceConfig

SWITCHABLE_NORMS = True  # measured: tau 0.54 with, 0.41 without (benchmarks/supernet_fidelity.py, 4 epochs)
_OPTION_TAGS = {"downsample": "ds", "se": "se", "groups": "g"}  # options whose weights mean different things


class WeightSharingError(UserError):
    """A space or network the shared weights cannot describe; the message says which part."""


def _stage_tag(stage: StageSpec) -> str:
    options = [f"{tag}={getattr(stage, option)}" for option, tag in _OPTION_TAGS.items()
               if option in BLOCK_INFO[stage.block].options]
    return f"{stage.block}[{','.join(options)}]" if options else stage.block


def _precision_tag(weight_bits: int, activation_bits: int) -> str:
    return f"@W{weight_bits}A{activation_bits}"


def _norm_prefixes(module: nn.Module) -> set[str]:
    return {name for name, child in module.named_modules() if isinstance(child, nn.modules.batchnorm._BatchNorm)}


def _own_key(name: str, norms: set[str], precision: str) -> str:
    """`name` inside one part, tagged with its precision where it belongs to one bit width only."""
    owner = name.rsplit(".", 1)[0] if "." in name else ""
    if "quantizer" in name or (SWITCHABLE_NORMS and owner in norms):
        return name + precision
    return name


def tensor_keys(genotype: Genotype, model: nn.Module) -> dict[str, str]:
    """State-dict name -> shared key for every parameter and buffer of `model` (built from `genotype`)."""
    norms = _norm_prefixes(model)
    block_owner: list[tuple[int, int, StageSpec]] = []
    channels = genotype.stem_width
    for index, stage in enumerate(genotype.stages):
        if BLOCK_INFO[stage.block].dense:
            raise WeightSharingError(f"stages.{index}: dense block {stage.block!r} cannot share weights "
                                     f"(its channel plan changes with the width); use evaluation: scratch")
        block_owner += [(index, j, stage) for j in range(len(stage_plan(stage, channels)))]
        channels = stage.width
    keys = {}
    for name in model.state_dict():
        part, _, rest = name.partition(".")
        if part == "stem":
            keys[name] = "stem." + _own_key(rest, {p[len("stem."):] for p in norms if p.startswith("stem.")},
                                            f"@{genotype.stem_bits}")
        elif part == "stages":
            number, _, inner = rest.partition(".")
            index, j, stage = block_owner[int(number)]
            prefix = f"stages.{number}."
            inner_norms = {p[len(prefix):] for p in norms if p.startswith(prefix)}
            keys[name] = (f"s{index}.{_stage_tag(stage)}.{j}."
                          + _own_key(inner, inner_norms, _precision_tag(stage.weight_bits, stage.activation_bits)))
        elif part in ("head", "fc"):
            inner_norms = {p[len(part) + 1:] for p in norms if p.startswith(part + ".")}
            keys[name] = f"{part}." + _own_key(rest, inner_norms, f"@{genotype.head_bits}")
        else:
            raise WeightSharingError(f"no shared key for {name!r}")
    return keys


def slices_for(stored: tuple[int, ...], wanted: tuple[int, ...], key: str) -> tuple[slice, ...]:
    """The view of a stored tensor that a smaller one reads: leading channels, centred kernels."""
    if len(stored) != len(wanted) or any(w > s for w, s in zip(wanted, stored)):
        raise WeightSharingError(f"shared tensor {key!r} has shape {tuple(stored)}; a network needs {tuple(wanted)}")
    cuts = []
    for dim, (have, need) in enumerate(zip(stored, wanted)):
        start = (have - need) // 2 if len(stored) == 4 and dim >= 2 else 0  # kernel centre (OFA)
        cuts.append(slice(start, start + need))
    return tuple(cuts)


@dataclass
class SharedLayout:
    """Each key's largest shape, whether it is ever a 1-bit kernel (latent weights to clip), and a
    block configuration that has that shape (to initialise it the way the block does)."""

    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    binary_kernels: set[str] = field(default_factory=set)
    sources: dict[str, tuple] = field(default_factory=dict)  # key -> ("block", stage, j, spec, cin) | ("whole", genotype)

    def _add(self, key: str, shape: tuple[int, ...], source: tuple) -> None:
        known = self.shapes.get(key)
        if known is not None and len(known) != len(shape):
            raise WeightSharingError(f"shared tensor {key!r} has shapes of different ranks ({known} and {shape})")
        grown = shape if known is None else tuple(max(a, b) for a, b in zip(known, shape))
        if grown != known:
            self.shapes[key] = grown
            if grown == shape:
                self.sources[key] = source

    @classmethod
    def of(cls, space: SpaceConfig, *, input_size: int, in_channels: int, num_classes: int) -> SharedLayout:
        layout = cls()
        geometry = dict(input_size=input_size, in_channels=in_channels, num_classes=num_classes)
        choices = space.choices()
        with torch.device("meta"):
            # Stem, head and classifier: a whole network per global combination (few), its stages smallest.
            glob = {name: values for name, values in space._global().items() if name != "width_mult"}
            smallest = {name: values[0] for name, values in choices.items()}
            # The head and classifier read the last stage a network has: the space's last, or the
            # one before it where the last is optional.
            last_stages = space.stages[-2:] if space.stages[-1].optional else space.stages[-1:]
            last_widths = sorted({space.scaled(w, m) for stage in last_stages for w in stage.widths
                                  for m in space.width_multipliers})
            for values in itertools.product(*glob.values()):
                params = {**smallest, **dict(zip(glob, values))}
                genotype = space.decode(params, **geometry)
                for width in last_widths:
                    stages = genotype.stages[:-1] + (genotype.stages[-1].model_copy(update={"width": width}),)
                    whole = genotype.model_copy(update={"stages": stages})
                    layout._record(whole, only=("stem", "head", "fc"))
            # Every block configuration of every stage, on every input width it can receive.
            inputs = [sorted(space.stem_widths)]
            for index, stage_choices in enumerate(space.stages):
                widths = sorted({space.scaled(w, m) for w in stage_choices.widths for m in space.width_multipliers})
                for spec in _stage_specs(space, index, widths, max(stage_choices.depths)):
                    for cin in inputs[-1]:
                        layout._record_stage(index, spec, cin)
                inputs.append(widths)
        return layout

    def _record(self, genotype: Genotype, only: tuple[str, ...]) -> None:
        model, source = build_model(genotype), ("whole", genotype)
        for name, key in tensor_keys(genotype, model).items():
            if name.split(".", 1)[0] in only:
                self._add(key, tuple(model.state_dict()[name].shape), source)

    def _record_stage(self, index: int, spec: StageSpec, cin: int) -> None:
        if spec.groups > 1 and cin % spec.groups:
            return
        for j in range(len(stage_plan(spec, cin))):
            source = ("block", index, j, spec, cin)
            block, keyed = _keyed_block(index, j, spec, cin)
            for key, tensor in keyed.items():
                self._add(key, tuple(tensor.shape), source)
            prefix = f"s{index}.{_stage_tag(spec)}.{j}."
            for name, module in block.named_modules():
                bits = getattr(getattr(module, "kernel_quantizer", None), "bits", 32)
                if bits == 1 and isinstance(getattr(module, "weight", None), nn.Parameter):
                    self.binary_kernels.add(f"{prefix}{name}.weight")

    def initial_tensors(self, seed: int) -> dict[str, torch.Tensor]:
        """Every key filled the way its block initialises it, at its largest shape (seeded)."""
        torch.manual_seed(seed)
        tensors: dict[str, torch.Tensor] = {}
        built: dict[int, dict[str, torch.Tensor]] = {}
        for key, source in self.sources.items():
            states = built.get(id(source))
            if states is None:
                states = built[id(source)] = _real_state(source)
            tensors[key] = _at_shape(states[key].detach(), self.shapes[key])
        missing = set(self.shapes) - set(tensors)
        if missing:
            raise WeightSharingError(f"no initial value for shared tensor {sorted(missing)[0]!r}")
        return tensors


def _at_shape(tensor: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """`tensor` as the initial value of a key of `shape`. Where no single configuration has the
    key's largest shape (its dimensions peak in different ones), kernels are drawn the way
    `nn.Conv2d` draws them and vectors repeat their first value (BN scale 1, bias 0, PReLU 0.25)."""
    if tuple(tensor.shape) == shape:
        return tensor.clone()
    if len(shape) >= 2:
        grown = torch.empty(shape)
        nn.init.kaiming_uniform_(grown, a=5 ** 0.5)
    else:
        grown = torch.full(shape, float(tensor.flatten()[0]) if tensor.numel() else 0.0, dtype=tensor.dtype)
    grown[tuple(slice(0, n) for n in tensor.shape)] = tensor
    return grown


def _real_state(source: tuple) -> dict[str, torch.Tensor]:
    """The keyed state of the block (or network) a layout source names, built for real."""
    if source[0] == "whole":
        genotype = source[1]
        model = build_model(genotype)
        return {key: model.state_dict()[name] for name, key in tensor_keys(genotype, model).items()}
    _, index, j, spec, cin = source
    return _keyed_block(index, j, spec, cin)[1]


def _keyed_block(index: int, j: int, spec: StageSpec, cin: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Block j of stage `index` as `spec` builds it on `cin` input channels, and its state by shared key."""
    factory, options = BLOCKS[spec.block], _block_kwargs(spec)
    block_in, block_out, stride, extra = stage_plan(spec, cin)[j]
    block = factory(in_channels=block_in, out_channels=block_out, stride=stride, kernel=spec.kernel, **options, **extra)
    norms = _norm_prefixes(block)
    prefix, precision = f"s{index}.{_stage_tag(spec)}.{j}.", _precision_tag(spec.weight_bits, spec.activation_bits)
    return block, {prefix + _own_key(name, norms, precision): tensor for name, tensor in block.state_dict().items()}


def _stage_specs(space: SpaceConfig, index: int, widths: list[int], depth: int):
    """Every (block, width, kernel, bits, options) a stage of the space can take, at full depth."""
    stage = space.stages[index]
    for block in space.blocks:
        info = BLOCK_INFO[block]
        if info.dense:
            raise WeightSharingError(f"space.blocks: dense block {block!r} cannot share weights (its channel plan "
                                     f"changes with the width); use evaluation: scratch")
        weight_bits = [b for b in space.weight_bits if b in info.weight_bits] or list(info.weight_bits[:1])
        activation_bits = [b for b in space.activation_bits if b in info.activation_bits] or list(info.activation_bits[:1])
        option_values = {"expansion": space.expansions, "se": space.se, "groups": space.groups,
                         "downsample": space.downsamples}
        used = [option for option in option_values if option in info.options]
        for width, kernel, wb, ab, *options in itertools.product(
                widths, space.kernels, weight_bits, activation_bits, *(option_values[o] for o in used)):
            chosen = dict(zip(used, options))
            if "groups" in chosen and width % chosen["groups"]:
                continue
            yield StageSpec(block=block, width=width, depth=depth, stride=stage.stride, kernel=kernel,
                            weight_bits=wb, activation_bits=ab, **chosen)
