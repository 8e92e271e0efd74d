"""`bitnas costs`: resolve a genotype (file or baseline), count its costs, print them.

Kept here, not in the CLI, so that the command line stays a thin parser and the same summary is
available to scripts: `costs_summary(genotype)` and `costs_json(genotype)`.
"""

from __future__ import annotations

import json
from pathlib import Path

from bitnas.errors import UserError

from .baselines import baseline_genotype
from .budget import check_budget
from .genotype import Genotype


class CostsInputError(UserError):
    """`bitnas costs` was given no network, two networks, or a file it cannot read."""


def resolve_genotype(path: Path | None, baseline: str | None, *, input_size: int | None = None,
                     in_channels: int | None = None, num_classes: int | None = None) -> Genotype:
    """The genotype from a JSON file or a baseline name, with the given geometry overriding its own."""
    if (path is None) == (baseline is None):
        raise CostsInputError("give either a genotype JSON file or --baseline NAME (exactly one)")
    if baseline is not None:
        return baseline_genotype(baseline, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CostsInputError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise CostsInputError(f"{path}: cannot read genotype file ({error.strerror or error})") from None
    genotype = Genotype.from_json(text)
    overrides = {key: value for key, value in (("input_size", input_size), ("in_channels", in_channels),
                                               ("num_classes", num_classes)) if value is not None}
    return Genotype.from_dict({**genotype.to_dict(), **overrides}) if overrides else genotype


def costs_json(genotype: Genotype) -> dict:
    """Totals (params, size_bits, bops, flops, ops, ace, low-bit MACs, memory) plus the genotype."""
    from .costs import genotype_costs

    report = genotype_costs(genotype)
    return {**report.totals(), "genotype": genotype.short(), "genotype_hash": genotype.hash(), "layers": report.rows()}


def costs_summary(genotype: Genotype) -> str:
    """A human summary: the genotype, the totals, then the per-layer table."""
    from .costs import genotype_costs

    report = genotype_costs(genotype)
    totals = report.totals()
    lines = [
        f"genotype  {genotype.short()}  (hash {genotype.hash()})",
        f"params    {report.params:,}   size {report.size_kb:,.1f} KiB ({report.size_bits:,} bits)",
        f"BOPs      {report.bops:.4g}   FLOPs {report.flops:.4g}   OPs {report.ops:.4g}   (OPs = BOPs/64 + FLOPs"
        f" + low-bit MACs x w x a / 64)",
        f"ACE       {report.ace:.4g}   MACs {report.macs:.4g} (2-bit {totals['macs_2bit']:.4g}, 4-bit "
        f"{totals['macs_4bit']:.4g}, 8-bit {totals['macs_8bit']:.4g})",
        f"memory    {totals['memory_kb']:,.1f} KiB read per inference (weights + layer inputs at their widths)",
        "",
        report.table(),
    ]
    return "\n".join(lines)


def costs_command(path: Path | None, baseline: str | None, *, input_size: int | None, in_channels: int | None,
                  num_classes: int | None, as_json: bool) -> str:
    """What `bitnas costs` prints."""
    for flag, value in (("--input-size", input_size), ("--in-channels", in_channels), ("--classes", num_classes)):
        if value is not None and value < 1:
            raise CostsInputError(f"{flag}: must be >= 1 (got {value})")
    genotype = resolve_genotype(path, baseline, input_size=input_size, in_channels=in_channels, num_classes=num_classes)
    check_budget(genotype, f"{path or baseline}: ")  # counting builds the model: refuse what would not fit
    return json.dumps(costs_json(genotype)) if as_json else costs_summary(genotype)
