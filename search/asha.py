"""Multi-objective asynchronous successive halving (MO-ASHA): the scheduling decisions only.

Why a scheduler at all: training every sampled network for the full `max_epochs` spends most of a
search on networks that were visibly bad after a fraction of an epoch. Successive halving trains
many networks briefly and only the best few longer; ASHA (Li et al., "A System for Massively
Parallel Hyperparameter Tuning", MLSys 2020) is its asynchronous form.

The ladder (`AshaSchedule`): rungs at `min_epochs * eta**k` epochs, the last one exactly
`max_epochs` (1/9, 1/3, 1 for min 1/9, max 1, eta 3). Like syne-tune's and Ray's ASHA, a
`max_epochs` that is not on the geometric ladder is appended as the last rung as it is
(min 1, max 10, eta 3: 1, 3, 9, 10) rather than moving the geometric rungs.

The asynchronous rule (`MultiObjectiveAsha.next_job`): whenever a worker is free, look at the rungs
from the top down; at rung k with n results, the best floor(n / eta) of them (all results at that
rung so far, promoted ones included) are the promotable set, and the first of them not yet
promoted is continued to rung k + 1. If no rung has one, the answer is "start a new trial at
rung 0" (None: the caller asks its sampler). Synchronous successive halving would make workers wait
until a rung has filled; ASHA never does, and accepts that a trial promoted early (from a rung
that later proves strong) might not have been promoted with hindsight: the number of such
mistakes shrinks as rungs grow, and a worker never idles. Top-down order finishes promising
trials first, so a search stopped at any time holds as many full-fidelity results as possible.

The multi-objective "best" (MO-ASHA, Schmucker et al., "Multi-objective Asynchronous Successive
Halving", 2021; also in syne-tune): there is no single score to sort by, so the results at a rung
are ordered by non-dominated rank (the Pareto front first, then the front of what remains, ...),
and within the last front that does not fit entirely into the floor(n / eta) places, by a
diversity tie-break. The paper studies two tie-breaks, an epsilon-net and NSGA-II's crowding
distance (Deb et al. 2002); crowding is used here because
- it needs no reference point and no scale: each objective's gaps are divided by that front's
  range in it, so milliseconds, kilobytes and accuracy weigh alike without any configuration
  (a hypervolume contribution would need a reference point, and an epsilon-net a metric over
  objectives measured in different units);
- it ranks the extreme points of a front first (infinite distance), which keeps both ends of the
  accuracy/cost front alive at the next rung: the most accurate networks and the cheapest binary
  ones are exactly what a low-bit NAS wants to carry to full fidelity;
- it is deterministic and cheap (sorts per objective), so a restored scheduler makes the decisions
  the crashed one would have made.

The fronts are those of Deb's fast non-dominated sort, computed by a sweep that needs O(n) memory
instead of Deb's n x n dominance lists: in lexicographic order every dominator of a point comes
before it, and a point's front is one more than the deepest front among its dominators (front
index = length of the longest dominance chain ending at the point). Time is O(M n^2) like Deb's,
vectorised over the earlier points; the ordering of a rung is cached until that rung's next result.

Failed results (any value NaN, or infinite, where no crowding arithmetic is defined) count towards a
rung's n, since they used its budget, rank after every finished result and are never promoted.

No Optuna, Ray or torch here: the driver owns the study and the workers, tells this object what
finished (`report`), asks it what to run next (`next_job`), and keeps `state()` (JSON) in the
study's user attributes so that `MultiObjectiveAsha.restore` resumes after a crash with nothing
lost; promotions handed out but not yet reported come back from `pending()`.
"""

from __future__ import annotations

import math
import numbers
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, Union

import numpy as np

TrialId = Union[int, str]

DIRECTIONS = ("maximize", "minimize")
STATE_VERSION = 1
# A geometric rung this close to max_epochs (relative) is max_epochs itself: 1/9 * 3**2 is
# 0.9999999999999999 in floating point, and a rung at that and another at 1.0 would be absurd.
_RUNG_RTOL = 1e-9


def _check_trial_id(trial_id: Any) -> TrialId:
    """Ids must survive JSON unchanged (an Optuna trial number, or a string): a tuple would come
    back a list and a float key could come back different, and a restored scheduler would then
    not recognise its own trials."""
    if isinstance(trial_id, bool) or not isinstance(trial_id, (numbers.Integral, str)):
        raise ValueError(f"trial ids must be int or str, got {trial_id!r} ({type(trial_id).__name__})")
    return int(trial_id) if isinstance(trial_id, numbers.Integral) else trial_id


@dataclass(frozen=True)
class AshaSchedule:
    """The fidelity ladder: rung k trains to `rungs[k]` epochs (fractional epochs are allowed)."""

    min_epochs: float
    max_epochs: float
    eta: int = 3

    def __post_init__(self) -> None:
        for name in ("min_epochs", "max_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number of epochs, got {value!r}")
        if self.min_epochs <= 0:
            raise ValueError(f"min_epochs must be > 0 (the first rung trains that many epochs), got {self.min_epochs!r}")
        if self.min_epochs > self.max_epochs:
            raise ValueError(f"min_epochs ({self.min_epochs!r}) must be <= max_epochs ({self.max_epochs!r})")
        if isinstance(self.eta, bool) or not isinstance(self.eta, numbers.Integral) or self.eta < 2:
            raise ValueError(f"eta must be an integer >= 2 (each rung keeps 1/eta of the one below), got {self.eta!r}")
        object.__setattr__(self, "min_epochs", float(self.min_epochs))
        object.__setattr__(self, "max_epochs", float(self.max_epochs))
        object.__setattr__(self, "eta", int(self.eta))

    @property
    def rungs(self) -> tuple[float, ...]:
        """min_epochs * eta**k below max_epochs, then max_epochs exactly.

        Each rung is computed from min_epochs directly (not by repeated multiplication), so that
        rounding does not accumulate up a long ladder."""
        rungs = []
        k = 0
        while True:
            epochs = self.min_epochs * self.eta ** k
            if epochs >= self.max_epochs * (1 - _RUNG_RTOL):
                break
            rungs.append(epochs)
            k += 1
        rungs.append(self.max_epochs)
        return tuple(rungs)

    @property
    def top(self) -> int:
        """Index of the last rung (max_epochs): trials there are finished, never promoted."""
        return len(self.rungs) - 1

    def to_dict(self) -> dict:
        return {"min_epochs": self.min_epochs, "max_epochs": self.max_epochs, "eta": self.eta}


@dataclass(frozen=True)
class Job:
    """Continue `trial_id` from rung `rung_index - 1` (trained to `from_epochs`) to rung `rung_index`
    (`to_epochs`). Both fidelities are given so that the caller can resume from a checkpoint taken
    at `from_epochs` or, without one, retrain from scratch to `to_epochs`."""

    trial_id: TrialId
    rung_index: int
    from_epochs: float
    to_epochs: float


def _failed(values: Sequence[float]) -> bool:
    return not all(math.isfinite(v) for v in values)


def nondominated_ranks(points: Sequence[Sequence[float]]) -> np.ndarray:
    """Front index (0 = Pareto front) of each point, all objectives minimised.

    The same fronts as Deb's fast non-dominated sort. Sweep in lexicographic order: a dominator is
    no worse everywhere and better somewhere, so it is lexicographically smaller and already ranked;
    a point's front is one past the deepest front among its dominators. Identical points do not
    dominate each other and share a front."""
    array = np.asarray(points, dtype=float)
    n = len(array)
    ranks = np.zeros(n, dtype=int)
    if n == 0:
        return ranks
    array = array.reshape(n, -1)
    order = np.lexsort(array.T[::-1])
    swept = array[order]
    swept_ranks = np.zeros(n, dtype=int)
    for i in range(1, n):
        earlier = swept[:i]
        dominators = (earlier <= swept[i]).all(axis=1) & (earlier < swept[i]).any(axis=1)
        if dominators.any():
            swept_ranks[i] = swept_ranks[:i][dominators].max() + 1
    ranks[order] = swept_ranks
    return ranks


def crowding_distances(points: Sequence[Sequence[float]]) -> np.ndarray:
    """NSGA-II crowding distance of each point of one front (larger = more isolated).

    Per objective: the two extreme points get infinity, the others the gap between their two
    neighbours divided by the front's range. An objective constant over the front says nothing
    about diversity and is skipped (Deb's formula would divide by zero there); so identical points
    all get 0 and are then ordered by the caller's tie-break. Ties in one objective are broken by
    position (stable sort), which keeps the result deterministic."""
    array = np.asarray(points, dtype=float)
    n = len(array)
    distances = np.zeros(n, dtype=float)
    if n == 0:
        return distances
    array = array.reshape(n, -1)
    for column in array.T:
        low, high = column.min(), column.max()
        if high == low:
            continue
        order = np.argsort(column, kind="stable")
        distances[order[0]] = distances[order[-1]] = math.inf
        if n > 2:
            distances[order[1:-1]] += (column[order[2:]] - column[order[:-2]]) / (high - low)
    return distances


def promotion_order(values: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Positions of `values` best first: finished results by (non-dominated rank, larger crowding
    distance within the front, earlier report), then the failed ones in report order.

    Sorting the whole list by (rank, -crowding) gives the MO-ASHA selection for any cut-off q at
    once: its first q are every front that fits entirely, then the most crowding-distant points of
    the front that is cut. Earlier report wins exact ties: that trial has waited longer."""
    signs = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    finished = [i for i, v in enumerate(values) if not _failed(v)]
    failed = [i for i, v in enumerate(values) if _failed(v)]
    if not finished:
        return failed
    minimised = np.asarray([values[i] for i in finished], dtype=float).reshape(len(finished), -1) * signs
    ranks = nondominated_ranks(minimised)
    crowding = np.zeros(len(finished))
    for front in np.unique(ranks):
        members = np.flatnonzero(ranks == front)
        crowding[members] = crowding_distances(minimised[members])
    order = sorted(range(len(finished)), key=lambda j: (ranks[j], -crowding[j], finished[j]))
    return [finished[j] for j in order] + failed


def _check_directions(directions: Iterable[str]) -> tuple[str, ...]:
    if isinstance(directions, str):
        raise ValueError(f"directions must be a list of 'maximize'/'minimize', one per objective, got the string {directions!r}")
    checked = tuple(directions)
    if not checked:
        raise ValueError("directions must name at least one objective ('maximize' or 'minimize')")
    for d in checked:
        if d not in DIRECTIONS:
            raise ValueError(f"each direction must be 'maximize' or 'minimize' (as Optuna spells them), got {d!r}")
    return checked


def _encode(value: float) -> float | None:
    # Strict JSON has no NaN or infinity; a failed value is stored as null and read back as NaN
    # (both mean "failed", which is all the scheduler needs to know about it).
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class AshaState:
    """Everything a scheduler knows, as plain data: per rung, the results in report order and the
    trials promoted from it in the order they were promoted. Report order is kept because it is the
    last tie-break, so a restored scheduler decides exactly as the original would have."""

    schedule: AshaSchedule
    directions: tuple[str, ...]
    results: tuple[tuple[tuple[TrialId, tuple[float, ...]], ...], ...]
    promoted: tuple[tuple[TrialId, ...], ...]

    def to_dict(self) -> dict:
        rungs = self.schedule.rungs
        return {
            "version": STATE_VERSION,
            "schedule": self.schedule.to_dict(),
            "directions": list(self.directions),
            "rungs": [{"epochs": rungs[k],
                       "results": [{"trial_id": t, "values": [_encode(v) for v in values]} for t, values in self.results[k]],
                       "promoted": list(self.promoted[k])}
                      for k in range(len(rungs))],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AshaState":
        """Parse (and check the shape of) what `to_dict` wrote; consistency between rungs is
        checked by `MultiObjectiveAsha.restore`, which replays it."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an ASHA state must be a mapping, got {type(data).__name__}")
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"unknown ASHA state version {data.get('version')!r} (this code reads version {STATE_VERSION})")
        try:
            schedule_data = data["schedule"]
            schedule = AshaSchedule(schedule_data["min_epochs"], schedule_data["max_epochs"], schedule_data["eta"])
            directions = _check_directions(data["directions"])
            rungs = data["rungs"]
        except (KeyError, TypeError) as missing:
            raise ValueError(f"an ASHA state needs schedule (min_epochs, max_epochs, eta), directions and rungs: {missing!r}") from None
        if not isinstance(rungs, list) or len(rungs) != len(schedule.rungs):
            raise ValueError(f"the ASHA state has {len(rungs) if isinstance(rungs, list) else rungs!r} rungs, "
                             f"its schedule has {len(schedule.rungs)}")
        results, promoted = [], []
        for k, rung in enumerate(rungs):
            try:
                if not math.isclose(rung["epochs"], schedule.rungs[k], rel_tol=_RUNG_RTOL):
                    raise ValueError(f"rung {k} of the ASHA state is at {rung['epochs']!r} epochs, its schedule says {schedule.rungs[k]!r}")
                results.append(tuple((_check_trial_id(r["trial_id"]),
                                      tuple(math.nan if v is None else float(v) for v in r["values"]))
                                     for r in rung["results"]))
                promoted.append(tuple(_check_trial_id(t) for t in rung["promoted"]))
            except (KeyError, TypeError) as bad:
                raise ValueError(f"rung {k} of the ASHA state is malformed ({bad!r}): it needs epochs, "
                                 "results [{trial_id, values}] and promoted [trial_id]") from None
        return cls(schedule, directions, tuple(results), tuple(promoted))


class MultiObjectiveAsha:
    """MO-ASHA's decisions for one study: which trial to continue next, or None for a new one.

    The caller runs new trials to `schedule.rungs[0]` epochs and reports each rung's objective
    values with `report`; every Job from `next_job` must be reported at its `rung_index` when done
    (with NaN values if it failed). Methods take a lock, so the driver's threads may share one."""

    def __init__(self, schedule: AshaSchedule, directions: Sequence[str]):
        if not isinstance(schedule, AshaSchedule):
            raise ValueError(f"schedule must be an AshaSchedule, got {type(schedule).__name__}")
        self.schedule = schedule
        self.directions = _check_directions(directions)
        self._rungs = schedule.rungs
        count = len(self._rungs)
        self._results: list[list[tuple[TrialId, tuple[float, ...]]]] = [[] for _ in range(count)]
        self._reported: list[set[TrialId]] = [set() for _ in range(count)]
        self._promoted: list[list[TrialId]] = [[] for _ in range(count)]
        self._promoted_set: list[set[TrialId]] = [set() for _ in range(count)]
        self._highest: dict[TrialId, int] = {}
        # The ordering of a rung changes only when it gets a result: cached until then, so a driver
        # asking next_job for every free worker does not re-sort unchanged rungs.
        self._order_cache: list[list[int] | None] = [None] * count
        self._lock = threading.RLock()

    # -- what the driver tells -------------------------------------------------------------------

    def report(self, trial_id: TrialId, rung_index: int, values: Sequence[float]) -> None:
        """Record that `trial_id` finished rung `rung_index` with these objective values (one per
        direction; NaN where it failed). Rung 0 is any new trial; a higher rung only a trial
        promoted to it, once: anything else is a bookkeeping error in the caller, refused here
        rather than silently corrupting the ranking."""
        trial_id = _check_trial_id(trial_id)
        if isinstance(rung_index, bool) or not isinstance(rung_index, numbers.Integral) or not 0 <= rung_index < len(self._rungs):
            raise ValueError(f"rung_index must be an integer in 0..{len(self._rungs) - 1}, got {rung_index!r}")
        rung_index = int(rung_index)
        try:
            checked = tuple(float(v) for v in values)
        except (TypeError, ValueError):
            raise ValueError(f"trial {trial_id!r}: values must be numbers, got {values!r}") from None
        if len(checked) != len(self.directions):
            raise ValueError(f"trial {trial_id!r} reported {len(checked)} value(s) at rung {rung_index}, "
                             f"expected {len(self.directions)} (one per direction)")
        with self._lock:
            if trial_id in self._reported[rung_index]:
                raise ValueError(f"trial {trial_id!r} already reported rung {rung_index}")
            if rung_index > 0 and trial_id not in self._promoted_set[rung_index - 1]:
                raise ValueError(f"trial {trial_id!r} reported rung {rung_index} without being promoted to it "
                                 f"(new trials report rung 0; higher rungs come from next_job)")
            self._results[rung_index].append((trial_id, checked))
            self._reported[rung_index].add(trial_id)
            self._highest[trial_id] = rung_index
            self._order_cache[rung_index] = None

    # -- what the driver asks --------------------------------------------------------------------

    def next_job(self) -> Job | None:
        """The next promotion, recorded as handed out; None means "start a new trial at rung 0".

        Never waits: a rung with fewer than eta results simply has nothing promotable yet."""
        with self._lock:
            for k in range(len(self._rungs) - 2, -1, -1):
                candidates = self._promotable(k)
                if candidates:
                    trial_id = candidates[0]
                    self._promoted[k].append(trial_id)
                    self._promoted_set[k].add(trial_id)
                    return Job(trial_id, k + 1, self._rungs[k], self._rungs[k + 1])
            return None

    def pending(self) -> list[Job]:
        """Promotions handed out and not reported yet, in the order they were handed out (rung by
        rung): after a driver crash, the jobs to run again."""
        with self._lock:
            return [Job(t, k + 1, self._rungs[k], self._rungs[k + 1])
                    for k in range(len(self._rungs) - 1) for t in self._promoted[k]
                    if t not in self._reported[k + 1]]

    def ranking(self, rung_index: int) -> list[TrialId]:
        """Trial ids at a rung, best first by the MO-ASHA ordering (failed ones last)."""
        with self._lock:
            return [self._results[rung_index][i][0] for i in self._order(rung_index)]

    def promotable(self, rung_index: int) -> list[TrialId]:
        """Trials at a rung below the top that are in its best floor(n / eta), not failed and not
        promoted yet, best first: what `next_job` would hand out from this rung."""
        with self._lock:
            return self._promotable(rung_index) if rung_index < len(self._rungs) - 1 else []

    def stopped(self, trial_id: TrialId) -> bool:
        """True when the trial's highest reported rung is below the top, it has not been promoted
        from there and is not promotable now (failed, or outside the best 1/eta). "Not yet": a rung
        that grows can make it promotable again, which is ASHA's way of correcting early calls.
        A trial that reached max_epochs is finished, not stopped (False), even if it failed there."""
        status = self.status(trial_id)
        return status == "stopped" or (status == "failed" and self._highest[_check_trial_id(trial_id)] < len(self._rungs) - 1)

    def status(self, trial_id: TrialId) -> str:
        """For display: "promoted" (continued, result not in yet), "promotable" (next_job will
        continue it), "stopped", "failed" (NaN at its highest rung, whichever rung), or "finished"
        (reported max_epochs)."""
        trial_id = _check_trial_id(trial_id)
        with self._lock:
            if trial_id not in self._highest:
                raise KeyError(f"trial {trial_id!r} has reported no rung")
            k = self._highest[trial_id]
            if _failed(dict(self._results[k])[trial_id]):
                return "failed"
            if k == len(self._rungs) - 1:
                return "finished"
            if trial_id in self._promoted_set[k]:
                return "promoted"
            return "promotable" if trial_id in self._promotable(k) else "stopped"

    # -- persistence -----------------------------------------------------------------------------

    def snapshot(self) -> AshaState:
        with self._lock:
            return AshaState(self.schedule, self.directions,
                             tuple(tuple(rung) for rung in self._results),
                             tuple(tuple(rung) for rung in self._promoted))

    def state(self) -> dict:
        """JSON-serialisable (strict JSON: failed values are null) summary of every rung: epochs,
        results in report order, promoted ids in promotion order. Small enough for an Optuna study
        user attribute, and all that `restore` needs."""
        return self.snapshot().to_dict()

    @classmethod
    def restore(cls, state: AshaState | Mapping[str, Any]) -> "MultiObjectiveAsha":
        """A scheduler in the state `state()` described, checked by replaying it rung by rung: a
        state that `report`/`next_job` could not have produced (a result above a rung without a
        promotion, a failed or unknown trial promoted, a duplicate) is refused with ValueError."""
        if not isinstance(state, AshaState):
            state = AshaState.from_dict(state)
        scheduler = cls(state.schedule, state.directions)
        for k, results in enumerate(state.results):
            for trial_id, values in results:
                scheduler.report(trial_id, k, values)
            if k < len(state.results) - 1:
                scheduler._replay_promotions(k, state.promoted[k])
            elif state.promoted[k]:
                raise ValueError(f"the ASHA state promotes {list(state.promoted[k])!r} from the top rung, which has no rung above")
        return scheduler

    # -- internals -------------------------------------------------------------------------------

    def _replay_promotions(self, k: int, promoted: Iterable[TrialId]) -> None:
        values = dict(self._results[k])
        for trial_id in promoted:
            if trial_id not in values:
                raise ValueError(f"the ASHA state promotes trial {trial_id!r} from rung {k}, where it has no result")
            if _failed(values[trial_id]):
                raise ValueError(f"the ASHA state promotes trial {trial_id!r} from rung {k}, where it failed")
            if trial_id in self._promoted_set[k]:
                raise ValueError(f"the ASHA state promotes trial {trial_id!r} from rung {k} twice")
            self._promoted[k].append(trial_id)
            self._promoted_set[k].add(trial_id)

    def _order(self, k: int) -> list[int]:
        if self._order_cache[k] is None:
            self._order_cache[k] = promotion_order([values for _, values in self._results[k]], self.directions)
        return self._order_cache[k]

    def _promotable(self, k: int) -> list[TrialId]:
        results = self._results[k]
        quota = len(results) // self.schedule.eta
        if quota == 0:
            return []
        best = (results[i] for i in self._order(k)[:quota])
        return [t for t, values in best if t not in self._promoted_set[k] and not _failed(values)]
