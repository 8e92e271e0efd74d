"""Structured channel pruning: a trained network and its genotype in, a narrower genotype and the
same network's kept channels out.

The result is not a masked copy: it is `build_model(smaller genotype)` with the kept channels'
weights copied in (convs on both sides, BatchNorm statistics and affine, learnable thresholds,
RSign thresholds, RPReLU, shortcut convs, the head and classifier inputs), so every runtime,
the packed engine included, really computes fewer channels.

Channels are tracked as *atoms*. A conv or a downsampling shortcut creates fresh channels (a
free group); an identity shortcut, a channel-wise shortcut (pooling) or a depthwise conv passes
its input's atoms on unchanged (the channels are tied: the same channel set must be kept on both
sides, or the residual add would mix channels); ReActNet's duplicate-and-concatenate repeats its
input's atoms m times. Keeping an atom keeps every channel it appears in, so a stage is pruned
consistently across all its blocks and their shortcuts, and a ReActNet stage whose widths double
by duplication is pruned through the stage (or the stem) it duplicates.

Which atoms to keep is decided per group by an importance score summed over the layers that
produce the atom's channels, each layer's scores divided by their mean so that layers weigh
alike: `bn` takes the |gamma| of the BatchNorm after the producing conv, `l1` the L1 norm of the
conv's latent (full-precision) kernel row. The criterion comparison is in benchmarks/pruning.py.

Blocks where exact surgery is not implemented (dense growth, grouped shuffles, MBConv's hidden
width tied to its input) are refused with one line naming the block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from bitnas.errors import UserError

from .blocks import (
    BinaryConvBlock,
    DepthwiseSeparableBlock,
    FloatConvBlock,
    MaxPoolShortcut,
    QuickNetBlock,
    ReActBlock,
    XnorBlock,
)
from .builder import build_model, stage_plan
from .genotype import Genotype
from .quantizers import ScaledSignWeights

CRITERIA = ("bn", "l1")
# Chosen by benchmarks/pruning.py on fully binary ReActNets, judged after fine-tuning (what users
# get): at 25% of the channels `l1` kept more accuracy than `bn` in each of three runs (0.959 vs
# 0.943 at 1x width; 0.969 vs 0.968 and 0.967 vs 0.959 at 2x width, on two CPUs), although `bn`
# is the better one right after pruning, before any fine-tuning.
DEFAULT_CRITERION = "l1"
SUPPORTED_BLOCKS = ("float", "binary", "xnor", "quicknet", "reactnet", "dwsep")
_WHY_NOT = {
    "binary_dense": "each layer concatenates its growth onto all earlier channels",
    "melius": "each layer concatenates its growth onto all earlier channels",
    "shuffle": "grouped convs and the channel shuffle interleave channels across groups",
    "mbconv": "its hidden width is tied to its input width by the expansion",
}


class PruningError(UserError):
    """A network or ratio that cannot be pruned; the message names the block or value."""


def check_prunable(genotype: Genotype) -> None:
    """Raise `PruningError` naming the first stage whose block channel pruning does not support."""
    for index, stage in enumerate(genotype.stages):
        if stage.block not in SUPPORTED_BLOCKS:
            why = _WHY_NOT.get(stage.block, "no channel surgery is written for it")
            raise PruningError(f"pruning: block {stage.block!r} (stage {index}) cannot be pruned ({why}); "
                               f"prunable blocks: {', '.join(SUPPORTED_BLOCKS)}")


def check_ratio(ratio: float) -> None:
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and 0 <= ratio < 1):
        raise PruningError(f"pruning: the ratio must lie in [0, 1) (got {ratio!r})")


def kept_count(size: int, ratio: float) -> int:
    """Channels kept of `size` when the `ratio` least important go (rounded half up, at least 1)."""
    return max(1, size - int(math.floor(ratio * size + 0.5)))


@dataclass(frozen=True)
class PruneResult:
    model: nn.Module
    genotype: Genotype
    ratio: float
    criterion: str
    # Old channel indices kept in each channel space, by the module that produces it ("stem",
    # "stages.3", "stages.3.conv1", ...): what a masking reference or a report needs.
    kept: dict[str, list[int]] = field(default_factory=dict)


# ---- tracing: which channels are tied to which ---------------------------------------------------

@dataclass
class _Space:
    name: str
    atoms: list[tuple[int, int]]  # (group, index in group) of each channel, in channel order


@dataclass
class _Group:
    size: int
    stage: int  # -1: the stem


@dataclass
class _Trace:
    groups: list[_Group] = field(default_factory=list)
    spaces: dict[str, _Space] = field(default_factory=dict)
    producers: list[tuple[_Space, int, nn.Module | None, torch.Tensor | None]] = field(default_factory=list)
    # (input space, output space, rule, stage): widths the builder must not see, lest it build a
    # different module (an identity instead of a downsampling conv, duplicated 1x1s instead of one).
    constraints: list[tuple[_Space, _Space, str, int]] = field(default_factory=list)
    blocks: list[tuple[nn.Module, dict[str, _Space], int]] = field(default_factory=list)
    stage_outputs: dict[int, _Space] = field(default_factory=dict)

    def free(self, name: str, size: int, stage: int) -> _Space:
        self.groups.append(_Group(size, stage))
        group = len(self.groups) - 1
        return self._add(_Space(name, [(group, i) for i in range(size)]))

    def tied(self, name: str, source: _Space) -> _Space:
        return self._add(_Space(name, list(source.atoms)))

    def repeated(self, name: str, source: _Space, copies: int) -> _Space:
        return self._add(_Space(name, list(source.atoms) * copies))

    def _add(self, space: _Space) -> _Space:
        self.spaces[space.name] = space
        return space

    def produce(self, space: _Space, bn: nn.Module | None, conv: nn.Module | None, offset: int = 0) -> None:
        self.producers.append((space, offset, bn, conv.weight.detach() if conv is not None else None))


def _channelwise(shortcut: nn.Module) -> bool:
    """A shortcut that maps channel j to channel j (identity, or pooling with no conv)."""
    return isinstance(shortcut, nn.Identity) or (isinstance(shortcut, MaxPoolShortcut)
                                                 and isinstance(shortcut.conv, nn.Identity))


def _shortcut_output(trace: _Trace, shortcut: nn.Module, source: _Space, name: str, width: int, stage: int,
                     stride: int) -> _Space:
    """A block's output space as its shortcut decides: the input's channels where the shortcut is
    channel-wise, else fresh channels that the shortcut's conv produces too."""
    if _channelwise(shortcut):
        return trace.tied(name, source)
    out = trace.free(name, width, stage)
    trace.produce(out, shortcut.bn, shortcut.conv)
    # At stride 1, equal widths would make the builder drop the conv; MaxPool shortcuts drop it at any stride.
    if stride == 1 or isinstance(shortcut, MaxPoolShortcut):
        trace.constraints.append((source, out, "differ", stage))
    return out


def _trace_block(trace: _Trace, block: nn.Module, name: str, source: _Space, width: int, stage: int,
                 stride: int) -> _Space:
    spaces = {"in": source}
    if isinstance(block, FloatConvBlock):
        out = trace.free(name, width, stage)
        trace.produce(out, block.bn, block.conv)
    elif isinstance(block, (BinaryConvBlock, QuickNetBlock)):
        out = _shortcut_output(trace, block.shortcut, source, name, width, stage, stride)
        trace.produce(out, block.bn, block.conv)
    elif isinstance(block, XnorBlock):
        mid = spaces["mid"] = trace.free(f"{name}.conv1", width, stage)
        trace.produce(mid, block.bn2, block.conv1)
        out = _shortcut_output(trace, block.shortcut, source, name, width, stage, stride)
        trace.produce(out, block.bn3, block.conv2)
    elif isinstance(block, ReActBlock):
        mid = spaces["mid"] = trace.tied(f"{name}.act_k", source)
        trace.produce(mid, block.bn_k, block.conv_k)
        part = block.bns_1x1[0].num_features
        if isinstance(block.shortcut_1x1, nn.Identity):  # part == in: each copy adds the input itself
            out = trace.repeated(name, mid, len(block.convs_1x1))
        else:
            out = trace.free(name, width, stage)
            trace.produce(out, block.shortcut_1x1.bn, block.shortcut_1x1.conv)
            # A width that became a multiple of the input's would be built as duplicated 1x1s.
            trace.constraints.append((mid, out, "not_multiple", stage))
        for copy, (conv, bn) in enumerate(zip(block.convs_1x1, block.bns_1x1)):
            trace.produce(out, bn, conv, offset=copy * part)
    elif isinstance(block, DepthwiseSeparableBlock):
        mid = spaces["mid"] = trace.tied(f"{name}.depthwise", source)
        trace.produce(mid, block.bn1, block.depthwise)
        out = trace.free(name, width, stage)
        trace.produce(out, block.bn2, block.pointwise)
    else:
        raise PruningError(f"pruning: {type(block).__name__} ({name}) cannot be pruned; prunable blocks: "
                           f"{', '.join(SUPPORTED_BLOCKS)}")
    spaces["out"] = out
    trace.blocks.append((block, spaces, stage))
    return out


def _trace(model: nn.Module, genotype: Genotype) -> _Trace:
    trace = _Trace()
    stem = trace.free("stem", genotype.stem_width, -1)
    trace.produce(stem, model.stem[1], model.stem[0])
    space, index, channels = stem, 0, genotype.stem_width
    for stage_index, stage in enumerate(genotype.stages):
        for _, _, stride, _ in stage_plan(stage, channels):
            space = _trace_block(trace, model.stages[index], f"stages.{index}", space, stage.width, stage_index, stride)
            index += 1
        trace.stage_outputs[stage_index] = space
        channels = stage.width
    return trace


# ---- choosing the kept channels -------------------------------------------------------------------

def _scores(trace: _Trace, criterion: str) -> list[torch.Tensor]:
    scores = [torch.zeros(group.size, dtype=torch.float64) for group in trace.groups]
    for space, offset, bn, weight in trace.producers:
        if criterion == "bn":
            if bn is None or getattr(bn, "weight", None) is None:
                continue
            values = bn.weight.detach().abs().double()
        else:
            if weight is None:
                continue
            values = weight.abs().double().flatten(1).sum(1)
        mean = float(values.mean())
        if mean > 0:
            values = values / mean
        for channel, value in enumerate(values.tolist()):
            group, atom = space.atoms[offset + channel]
            scores[group][atom] += value
    return scores


def _count(space: _Space, keeps: dict[int, int], trace: _Trace) -> int:
    return sum(1 for group, atom in space.atoms if atom < keeps[trace.groups[group].stage])


def _holds(rule: str, cin: int, cout: int) -> bool:
    return cin != cout if rule == "differ" else cout % cin != 0


def _stage_keeps(trace: _Trace, genotype: Genotype, ratio: float) -> dict[int, int]:
    """Channels each stage keeps (-1: the stem), respecting the builder's structural rules."""
    # The stem is no stage: it is pruned only where a stage's channels are its own channels.
    stem_linked = any(trace.groups[group].stage == -1 for name, space in trace.spaces.items() if name != "stem"
                      for group, _ in space.atoms)
    # A pruned stem can leave a later stage no width that keeps its shortcut as built (a reactnet of
    # width 1 after a stem of 2: pruned to 1 -> 1, its downsampling shortcut would vanish): then the
    # stem keeps its channels and only the stages are pruned.
    stems = [kept_count(genotype.stem_width, ratio), genotype.stem_width] if stem_linked else [genotype.stem_width]
    return _keeps_from(trace, genotype, ratio, stems)


SEARCH_LIMIT = 20_000  # stage widths tried before pruning gives up (a backtracking search, see below)


def _keeps_from(trace: _Trace, genotype: Genotype, ratio: float, stems: list[int]) -> dict[int, int]:
    """Each stage's kept width, as near `ratio` as the builder's rules allow: the stem's choices in
    order, then stage by stage, nearest first; a stage with no width that keeps its shortcuts as
    built sends the search back to the choice before it (a reactnet of 3 -> 2 -> 1: once the stem
    keeps 1, stage 0 keeps no non-multiple of it), so a network is refused only when no assignment
    exists within the limit."""
    keeps: dict[int, int] = {}
    stages = list(enumerate(genotype.stages))
    tries = 0
    stuck = 0  # the deepest stage that had no width: the one the error names

    def place(position: int) -> bool:
        nonlocal tries, stuck
        if position == len(stages):
            return True
        index, stage = stages[position]
        own = any(trace.groups[g].stage == index for g, _ in trace.stage_outputs[index].atoms)
        if not own:  # tied to or duplicated from earlier channels: their choice decides
            keeps[index] = _count(trace.stage_outputs[index], keeps, trace)
            return place(position + 1)
        # Counting with "atom < keep" is right for any atoms set: only how many survive matters here.
        rules = [(source, out, rule) for source, out, rule, at in trace.constraints if at == index]
        wanted = kept_count(stage.width, ratio)
        for candidate in sorted(range(1, stage.width + 1), key=lambda k: (abs(k - wanted), -k)):
            tries += 1
            if tries > SEARCH_LIMIT:
                return False
            keeps[index] = candidate
            if all(_holds(rule, _count(source, keeps, trace), _count(out, keeps, trace)) for source, out, rule in rules) \
                    and place(position + 1):
                return True
        stuck = max(stuck, index)
        return False

    for stem_keep in dict.fromkeys(stems):  # in order, without repeats (ratio 0 keeps the stem)
        keeps[-1] = stem_keep
        if place(0):
            return keeps
    raise PruningError(f"pruning: stage {stuck} ({genotype.stages[stuck].block}) has no width that keeps its "
                       "shortcuts")


def _select(trace: _Trace, keeps: dict[int, int], criterion: str) -> list[torch.Tensor]:
    """Kept atoms of each group: the most important, in their original order."""
    chosen = []
    for group, score in zip(trace.groups, _scores(trace, criterion)):
        keep = min(group.size, keeps[group.stage])
        # Stable order: among equal scores the earlier channel stays (ratio 0 keeps all in order).
        order = sorted(range(group.size), key=lambda i: (-float(score[i]), i))[:keep]
        chosen.append(torch.tensor(sorted(order), dtype=torch.long))
    return chosen


def _kept_indices(space: _Space, chosen: list[torch.Tensor]) -> torch.Tensor:
    sets = [set(c.tolist()) for c in chosen]
    return torch.tensor([i for i, (group, atom) in enumerate(space.atoms) if atom in sets[group]], dtype=torch.long)


# ---- copying the kept channels --------------------------------------------------------------------

@torch.no_grad()
def _copy_bn(new: nn.Module, old: nn.Module, idx: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        source = getattr(old, name)
        if source is not None:
            getattr(new, name).copy_(source[idx])
    if old.num_batches_tracked is not None:
        new.num_batches_tracked.copy_(old.num_batches_tracked)


@torch.no_grad()
def _copy_channels(new: torch.Tensor, old: torch.Tensor, idx: torch.Tensor | None, dim: int) -> None:
    new.copy_(old if idx is None or old.shape == new.shape else old.index_select(dim, idx))


@torch.no_grad()
def _copy_quantizer(new: nn.Module, old: nn.Module, in_idx: torch.Tensor | None) -> None:
    # Scalars (LSQ steps, 2-bit levels, a shared RSign threshold) copy whole; per-channel
    # thresholds (RSign) follow the conv's input channels.
    for (_, target), (_, source) in zip(new.state_dict(keep_vars=True).items(), old.state_dict(keep_vars=True).items()):
        _copy_channels(target.data, source.data, in_idx, 1)


@torch.no_grad()
def _copy_conv(new: nn.Module, old: nn.Module, out_idx: torch.Tensor, in_idx: torch.Tensor | None) -> None:
    weight = old.weight.detach()[out_idx]
    if in_idx is not None and old.groups == 1 and len(in_idx) < old.in_channels:
        weight = weight[:, in_idx]
        if isinstance(getattr(old, "kernel_quantizer", None), ScaledSignWeights):
            # The binary scale is mean|w| over a row: rescale the kept latent weights so that each
            # output channel keeps its scale (signs are unchanged) and only the removed inputs' terms go.
            full = old.weight.detach()[out_idx].abs().flatten(1).mean(1)
            kept = weight.abs().flatten(1).mean(1).clamp_min(1e-12)
            weight = weight * (full / kept).view(-1, 1, 1, 1)
    new.weight.copy_(weight)
    if old.bias is not None:
        new.bias.copy_(old.bias[out_idx])
    for which in ("input_quantizer", "kernel_quantizer"):
        if hasattr(old, which):
            _copy_quantizer(getattr(new, which), getattr(old, which), in_idx)


def _copy_shift(new: nn.Module, old: nn.Module, idx: torch.Tensor) -> None:
    _copy_channels(new.shift.data, old.shift.data, idx, 1)


@torch.no_grad()
def _copy_rprelu(new: nn.Module, old: nn.Module, idx: torch.Tensor) -> None:
    _copy_shift(new.shift_in, old.shift_in, idx)
    new.prelu.weight.copy_(old.prelu.weight[idx])
    _copy_shift(new.shift_out, old.shift_out, idx)


def _copy_shortcut(new: nn.Module, old: nn.Module, in_idx: torch.Tensor, out_idx: torch.Tensor) -> None:
    if isinstance(old, nn.Identity):
        return
    if not isinstance(old.conv, nn.Identity):
        _copy_conv(new.conv, old.conv, out_idx, in_idx)
    _copy_bn(new.bn, old.bn, out_idx)


def _copy_block(new: nn.Module, old: nn.Module, idx: dict[str, torch.Tensor]) -> None:
    if type(new) is not type(old):
        raise PruningError(f"pruning: the narrower genotype builds {type(new).__name__} where {type(old).__name__} was")
    i_in, i_out = idx["in"], idx["out"]
    if isinstance(old, FloatConvBlock):
        _copy_conv(new.conv, old.conv, i_out, i_in)
        _copy_bn(new.bn, old.bn, i_out)
    elif isinstance(old, (BinaryConvBlock, QuickNetBlock)):
        if isinstance(old, BinaryConvBlock):
            _copy_shift(new.threshold, old.threshold, i_in)
        _copy_conv(new.conv, old.conv, i_out, i_in)
        _copy_bn(new.bn, old.bn, i_out)
        _copy_shortcut(new.shortcut, old.shortcut, i_in, i_out)
    elif isinstance(old, XnorBlock):
        _copy_bn(new.bn1, old.bn1, i_in)
        _copy_conv(new.conv1, old.conv1, idx["mid"], i_in)
        _copy_bn(new.bn2, old.bn2, idx["mid"])
        _copy_conv(new.conv2, old.conv2, i_out, idx["mid"])
        _copy_bn(new.bn3, old.bn3, i_out)
        _copy_shortcut(new.shortcut, old.shortcut, i_in, i_out)
    elif isinstance(old, ReActBlock):
        _copy_conv(new.conv_k, old.conv_k, i_in, i_in)
        _copy_bn(new.bn_k, old.bn_k, i_in)
        _copy_rprelu(new.act_k, old.act_k, i_in)
        if len(new.convs_1x1) != len(old.convs_1x1):
            raise PruningError("pruning: the narrower ReActNet block has a different number of duplicated 1x1 convs")
        part = old.bns_1x1[0].num_features
        for copy, (conv, bn) in enumerate(zip(old.convs_1x1, old.bns_1x1)):
            # This copy's kept outputs, as indices into the copy (for duplicated 1x1s: the kept inputs).
            mine = i_out[(i_out >= copy * part) & (i_out < (copy + 1) * part)] - copy * part
            _copy_conv(new.convs_1x1[copy], conv, mine, i_in)
            _copy_bn(new.bns_1x1[copy], bn, mine)
        _copy_shortcut(new.shortcut_1x1, old.shortcut_1x1, i_in, i_out)
        _copy_rprelu(new.act_1x1, old.act_1x1, i_out)
    elif isinstance(old, DepthwiseSeparableBlock):
        _copy_conv(new.depthwise, old.depthwise, i_in, None)
        _copy_bn(new.bn1, old.bn1, i_in)
        _copy_conv(new.pointwise, old.pointwise, i_out, i_in)
        _copy_bn(new.bn2, old.bn2, i_out)


def _narrower(genotype: Genotype, keeps: dict[int, int]) -> Genotype:
    data = genotype.to_dict()
    data["stem_width"] = keeps[-1]
    for index, stage in enumerate(data["stages"]):
        stage["width"] = keeps[index]
    try:
        return Genotype.from_dict(data)
    except UserError as error:  # e.g. layout 'lce' channel multiples
        raise PruningError(f"pruning: the narrower network is not a valid genotype ({error})") from None


def prune(model: nn.Module, genotype: Genotype, ratio: float, *, criterion: str = DEFAULT_CRITERION) -> PruneResult:
    """Remove the `ratio` least important output channels of every stage (and of the stem where
    a stage's shortcuts carry the stem's channels); the original model is left as it was."""
    check_ratio(ratio)
    if criterion not in CRITERIA:
        raise PruningError(f"pruning: unknown criterion {criterion!r}; known: {', '.join(CRITERIA)}")
    check_prunable(genotype)
    trace = _trace(model, genotype)
    keeps = _stage_keeps(trace, genotype, ratio)
    chosen = _select(trace, keeps, criterion)
    smaller = _narrower(genotype, keeps)
    new = build_model(smaller)
    old_keys, new_keys = set(model.state_dict()), set(new.state_dict())
    if old_keys != new_keys:
        raise PruningError(f"pruning: the narrower network has other parts ({sorted(old_keys ^ new_keys)[:3]} ...)")
    kept = {name: _kept_indices(space, chosen) for name, space in trace.spaces.items()}
    for _, spaces, stage in trace.blocks:
        for role in ("out", "mid"):
            if role in spaces and len(kept[spaces[role].name]) != (smaller.stages[stage].width if role == "out" or
                                                                   spaces[role].name.endswith(".conv1")
                                                                   else len(kept[spaces["in"].name])):
                raise PruningError(f"pruning: {spaces[role].name} keeps {len(kept[spaces[role].name])} channels, "
                                   "not what its stage's width asks")
    with torch.no_grad():
        stem = kept["stem"]
        _copy_conv(new.stem[0], model.stem[0], stem, None)
        _copy_bn(new.stem[1], model.stem[1], stem)
        for index, (block, spaces, _) in enumerate(trace.blocks):
            _copy_block(new.stages[index], block, {role: kept[space.name] for role, space in spaces.items()})
        last = kept[trace.blocks[-1][1]["out"].name]
        if hasattr(model, "head"):
            everything = torch.arange(genotype.head_width)
            _copy_conv(new.head[0], model.head[0], everything, last)
            _copy_bn(new.head[1], model.head[1], everything)
            last = everything
        new.fc.weight.copy_(model.fc.weight[:, last])
        new.fc.bias.copy_(model.fc.bias)
        for which in ("input_quantizer", "kernel_quantizer"):
            if hasattr(model.fc, which):
                _copy_quantizer(getattr(new.fc, which), getattr(model.fc, which), None)
    new.train(model.training)
    return PruneResult(new, smaller, float(ratio), criterion, {name: idx.tolist() for name, idx in kept.items()})


__all__ = ["CRITERIA", "DEFAULT_CRITERION", "SUPPORTED_BLOCKS", "PruneResult", "PruningError", "check_prunable",
           "check_ratio", "kept_count", "prune"]
