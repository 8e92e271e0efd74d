"""MO-ASHA's scheduling decisions (search/asha.py) on scripted results: the rung ladder, promotion by
non-dominated rank with a crowding tie-break, asynchrony, failed results, and resuming from state."""

from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
import pytest

from bitnas.search.asha import (AshaSchedule, AshaState, Job, MultiObjectiveAsha, crowding_distances,
                                nondominated_ranks, promotion_order)

NAN = math.nan
# accuracy up, latency down: the project's usual pair
MAX_MIN = ["maximize", "minimize"]


def scheduler(min_epochs=1 / 9, max_epochs=1.0, eta=3, directions=MAX_MIN) -> MultiObjectiveAsha:
    return MultiObjectiveAsha(AshaSchedule(min_epochs, max_epochs, eta), directions)


# -- the ladder ---------------------------------------------------------------------------------

def test_rung_fidelities():
    assert AshaSchedule(1 / 9, 1, 3).rungs == pytest.approx((1 / 9, 1 / 3, 1))
    assert AshaSchedule(1 / 9, 1, 3).rungs[-1] == 1.0  # exactly max_epochs, not 0.9999999999999999
    assert AshaSchedule(1, 27, 3).rungs == (1, 3, 9, 27)
    assert AshaSchedule(1, 16, 2).rungs == (1, 2, 4, 8, 16)
    assert AshaSchedule(1, 10, 3).rungs == (1, 3, 9, 10)  # max_epochs off the ladder: appended as the last rung
    assert AshaSchedule(2, 2, 3).rungs == (2,)
    assert AshaSchedule(1 / 9, 1, 3).top == 2


def test_single_rung_never_promotes():
    asha = scheduler(1, 1)
    for t in range(9):
        asha.report(t, 0, [0.5 + t / 100, 1.0])
    assert asha.next_job() is None
    assert asha.status(0) == "finished" and not asha.stopped(0)


# -- promotion ----------------------------------------------------------------------------------

def test_promotion_as_soon_as_a_rung_has_eta_results():
    asha = scheduler()
    asha.report(0, 0, [0.50, 5.0])
    assert asha.next_job() is None
    asha.report(1, 0, [0.90, 1.0])  # dominates both others
    assert asha.next_job() is None
    asha.report(2, 0, [0.60, 4.0])
    assert asha.next_job() == Job(trial_id=1, rung_index=1, from_epochs=1 / 9, to_epochs=1 / 3)
    assert asha.next_job() is None  # floor(3 / 3) = 1 place, already used
    assert asha.status(1) == "promoted"
    assert asha.stopped(0) and asha.stopped(2) and not asha.stopped(1)


def test_dominated_trial_is_not_promoted_over_a_non_dominated_one():
    asha = scheduler()
    # trial 0 is on the front alone (best accuracy, not the fastest); trial 1 is dominated by 2 and
    # faster than 0; trial 2 is dominated by nothing either.
    asha.report(0, 0, [0.95, 3.0])
    asha.report(1, 0, [0.70, 2.5])
    asha.report(2, 0, [0.80, 2.0])
    for t in range(3, 6):
        asha.report(t, 0, [0.40, 9.0])  # dominated by everything
    promoted = {asha.next_job().trial_id, asha.next_job().trial_id}  # floor(6 / 3) = 2
    assert promoted == {0, 2}
    assert asha.next_job() is None
    assert asha.stopped(1)


def test_crowding_picks_the_extreme_points_of_a_front_first():
    asha = scheduler(eta=2, max_epochs=8 / 9)
    # one front of five, from accurate and slow to inaccurate and fast, plus five dominated ones
    front = [[0.95, 5.0], [0.90, 3.0], [0.85, 2.5], [0.80, 2.0], [0.60, 1.0]]
    for t, values in enumerate(front):
        asha.report(t, 0, values)
    assert asha.ranking(0)[:2] in ([0, 4], [4, 0])
    # with six results, eta 2: three places; the extremes first, then the interior point with the
    # widest normalised neighbourhood: trial 3 (0.25/0.35 + 1.5/4, against 0.10/0.35 + 2.5/4 for
    # trial 1 and 0.10/0.35 + 1/4 for trial 2)
    asha.report(5, 0, [0.10, 9.0])
    jobs = [asha.next_job() for _ in range(3)]
    assert {j.trial_id for j in jobs[:2]} == {0, 4}
    assert jobs[2].trial_id == 3
    assert asha.next_job() is None


def test_async_returns_none_rather_than_waiting():
    asha = scheduler()
    assert asha.next_job() is None  # nothing reported: start a trial
    asha.report(0, 0, [0.9, 1.0])
    asha.report(1, 0, [0.8, 2.0])
    assert asha.next_job() is None  # two of three results: no waiting for the third, a new trial instead
    asha.report(2, 0, [0.7, 3.0])
    job = asha.next_job()
    assert job.trial_id == 0
    # the promoted trial is still running at rung 1: the next free worker gets a new trial
    assert asha.next_job() is None
    assert asha.pending() == [job]


def test_each_trial_is_promoted_from_a_rung_at_most_once():
    asha = scheduler()
    rng = random.Random(7)
    handed: list[tuple[int, int]] = []
    trial = itertools.count()
    for _ in range(200):
        tops = {k: asha.ranking(k)[:len(asha.ranking(k)) // 3] for k in range(2)}
        job = asha.next_job()
        if job is None:
            asha.report(next(trial), 0, [rng.random(), rng.random()])
        else:
            # promoted from the best 1/eta of its rung at that moment (later results may push it
            # out of it: ASHA's accepted early calls, so the count is not bounded by n // eta)
            assert job.trial_id in tops[job.rung_index - 1]
            handed.append((job.trial_id, job.rung_index))
            asha.report(job.trial_id, job.rung_index, [rng.random(), rng.random()])
    assert handed and len(handed) == len(set(handed))
    assert {k for _, k in handed} == {1, 2}
    for rung in asha.state()["rungs"]:
        assert len(rung["promoted"]) == len(set(rung["promoted"]))
    with pytest.raises(ValueError, match="already reported"):
        asha.report(0, 0, [0.5, 0.5])


def test_top_rung_trials_are_never_promoted_further():
    asha = scheduler(1 / 3, 1)  # rungs 1/3, 1
    for t in range(3):
        asha.report(t, 0, [0.5 + t / 10, 1.0])
    job = asha.next_job()
    assert job == Job(2, 1, 1 / 3, 1.0)
    for t in range(3, 9):
        asha.report(t, 0, [0.1 + t / 100, 2.0])
    # top rung filled by the promotions; each only once, and none goes past it
    jobs = []
    while (j := asha.next_job()) is not None:
        jobs.append(j)
    assert all(j.rung_index == 1 for j in jobs)
    for j in [job, *jobs]:
        asha.report(j.trial_id, 1, [0.9, 1.0])
    assert asha.next_job() is None
    assert asha.promotable(1) == []
    assert asha.status(2) == "finished" and not asha.stopped(2)
    asha.report(9, 0, [NAN, NAN])
    assert asha.stopped(9)
    failed_at_top = scheduler(1, 1)
    failed_at_top.report(0, 0, [NAN, NAN])
    assert failed_at_top.status(0) == "failed" and not failed_at_top.stopped(0)  # not stopped early
    with pytest.raises(ValueError, match="rung_index must be an integer in 0..1"):
        asha.report(2, 2, [0.9, 1.0])


def test_directions_are_respected():
    values = [[1.0], [3.0], [2.0]]
    up = scheduler(directions=["maximize"])
    down = scheduler(directions=["minimize"])
    for t, v in enumerate(values):
        up.report(t, 0, v)
        down.report(t, 0, v)
    assert up.next_job().trial_id == 1
    assert down.next_job().trial_id == 0
    # two objectives: the maximised one alone decides between points equal in the minimised one
    mixed = scheduler(directions=["minimize", "maximize"])
    for t, v in enumerate([[2.0, 0.1], [2.0, 0.9], [2.0, 0.5]]):
        mixed.report(t, 0, v)
    assert mixed.next_job().trial_id == 1


def test_nan_never_promoted():
    asha = scheduler()
    asha.report(0, 0, [NAN, NAN])
    asha.report(1, 0, [NAN, 0.1])  # one failed objective fails the result
    asha.report(2, 0, [NAN, NAN])
    assert asha.next_job() is None  # the place is there, but no finished result to fill it
    assert asha.ranking(0) == [0, 1, 2]
    asha.report(3, 0, [0.2, 9.0])
    asha.report(4, 0, [math.inf, 1.0])  # infinite counts as failed too
    asha.report(5, 0, [NAN, NAN])
    assert asha.ranking(0)[0] == 3 and set(asha.ranking(0)[1:]) == {0, 1, 2, 4, 5}
    assert asha.next_job().trial_id == 3  # failures rank last, even behind a poor result
    assert asha.next_job() is None
    assert asha.status(0) == "failed" and asha.stopped(0)
    for t in range(6, 30):
        asha.report(t, 0, [NAN, NAN])
    assert asha.next_job() is None  # ten places now, but only one finished result, already promoted
    assert [j.trial_id for j in asha.pending()] == [3]


# -- persistence --------------------------------------------------------------------------------

def drive(asha: MultiObjectiveAsha, rng: random.Random, steps: int, trial: itertools.count, decisions: list):
    """Simulate workers finishing in order: each free slot runs what next_job says, results at
    random (some failed), and record every decision."""
    for _ in range(steps):
        job = asha.next_job()
        decisions.append(job)
        values = [NAN, NAN] if rng.random() < 0.1 else [rng.random(), rng.random() * 10]
        if job is None:
            asha.report(next(trial), 0, values)
        else:
            asha.report(job.trial_id, job.rung_index, values)


def test_state_round_trips_through_json_and_restored_scheduler_decides_the_same():
    original = scheduler(1 / 27, 1)
    drive(original, random.Random(1), 80, itertools.count(), [])
    # a promotion handed out when the driver crashed
    extra = itertools.count()
    while (lost := original.next_job()) is None:
        original.report(f"extra-{next(extra)}", 0, [0.99, 0.01])  # string ids survive JSON too
    text = json.dumps(original.state(), allow_nan=False)  # strict JSON: failed values are null
    restored = MultiObjectiveAsha.restore(json.loads(text))
    assert restored.state() == original.state()
    assert AshaState.from_dict(json.loads(text)).to_dict() == original.state()
    assert restored.pending() == original.pending() == [lost]
    assert restored.status(lost.trial_id) == "promoted"
    # the same results from here on give the same decisions
    for asha in (original, restored):
        asha.report(lost.trial_id, lost.rung_index, [0.5, 5.0])
    a, b = [], []
    drive(original, random.Random(2), 120, itertools.count(1000), a)
    drive(restored, random.Random(2), 120, itertools.count(1000), b)
    assert a == b and any(j is not None for j in a)
    assert json.dumps(original.state()) == json.dumps(restored.state())


def test_restore_refuses_inconsistent_states():
    asha = scheduler()
    for t in range(3):
        asha.report(t, 0, [t / 10, 1.0])
    asha.next_job()
    good = asha.state()

    bad = json.loads(json.dumps(good))
    bad["rungs"][1]["results"].append({"trial_id": 0, "values": [0.1, 1.0]})  # never promoted
    with pytest.raises(ValueError, match="without being promoted"):
        MultiObjectiveAsha.restore(bad)
    bad = json.loads(json.dumps(good))
    bad["rungs"][0]["promoted"].append(99)
    with pytest.raises(ValueError, match="trial 99 from rung 0, where it has no result"):
        MultiObjectiveAsha.restore(bad)
    bad = json.loads(json.dumps(good))
    bad["version"] = 7
    with pytest.raises(ValueError, match="unknown ASHA state version 7"):
        MultiObjectiveAsha.restore(bad)
    bad = json.loads(json.dumps(good))
    bad["schedule"]["eta"] = 2  # a different ladder than the rungs stored
    with pytest.raises(ValueError, match="rungs"):
        MultiObjectiveAsha.restore(bad)


# -- the ordering itself -------------------------------------------------------------------------

def peeled_fronts(points) -> list[int]:
    """Reference: Pareto fronts by repeatedly removing the non-dominated points (minimisation)."""
    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    ranks = [None] * len(points)
    left = set(range(len(points)))
    front = 0
    while left:
        current = {i for i in left if not any(dominates(points[j], points[i]) for j in left)}
        for i in current:
            ranks[i] = front
        left -= current
        front += 1
    return ranks


def test_nondominated_ranks_match_front_peeling():
    rng = np.random.default_rng(0)
    for objectives in (1, 2, 3):
        # integer grid: many ties and duplicates
        points = rng.integers(0, 6, size=(60, objectives)).tolist()
        assert nondominated_ranks(points).tolist() == peeled_fronts(points)
    assert nondominated_ranks([]).tolist() == []


def test_crowding_distances_nsga2():
    # one front of four on two objectives: extremes infinite, interior by normalised neighbour gaps
    front = [[0.0, 4.0], [1.0, 2.0], [3.0, 1.0], [4.0, 0.0]]
    d = crowding_distances(front)
    assert math.isinf(d[0]) and math.isinf(d[3])
    assert d[1] == pytest.approx((3 - 0) / 4 + (4 - 1) / 4)
    assert d[2] == pytest.approx((4 - 1) / 4 + (2 - 0) / 4)
    assert crowding_distances([[1.0, 1.0]] * 3).tolist() == [0.0, 0.0, 0.0]  # identical: no diversity to reward


def test_promotion_order_by_rank_then_crowding_then_report_order():
    directions = ["minimize", "minimize"]
    values = [[5.0, 5.0], [0.0, 4.0], [1.0, 2.0], [4.0, 0.0], [2.0, 1.9], [NAN, 0.0], [5.0, 5.0]]
    order = promotion_order(values, directions)
    assert order[:2] == [1, 3]  # the front's extremes, earlier report first
    assert set(order[2:4]) == {2, 4}
    assert order[4:] == [0, 6, 5]  # dominated duplicates in report order, then the failure


# -- bad arguments -------------------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    ((0, 1, 3), "min_epochs must be > 0"),
    ((-1, 1, 3), "min_epochs must be > 0"),
    ((2, 1, 3), r"min_epochs \(2\) must be <= max_epochs \(1\)"),
    ((1, 9, 1), "eta must be an integer >= 2"),
    ((1, 9, 2.5), "eta must be an integer >= 2"),
    ((1, math.inf, 3), "max_epochs must be a finite number"),
    ((NAN, 1, 3), "min_epochs must be a finite number"),
])
def test_bad_schedule_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        AshaSchedule(*args)


def test_bad_scheduler_arguments():
    schedule = AshaSchedule(1, 9)
    with pytest.raises(ValueError, match="'maximize' or 'minimize'.*got 'max'"):
        MultiObjectiveAsha(schedule, ["max"])
    with pytest.raises(ValueError, match="at least one objective"):
        MultiObjectiveAsha(schedule, [])
    with pytest.raises(ValueError, match="got the string"):
        MultiObjectiveAsha(schedule, "maximize")
    asha = MultiObjectiveAsha(schedule, MAX_MIN)
    with pytest.raises(ValueError, match="reported 1 value\\(s\\) at rung 0, expected 2"):
        asha.report(0, 0, [0.5])
    with pytest.raises(ValueError, match="rung_index must be an integer in 0..2, got 3"):
        asha.report(0, 3, [0.5, 1.0])
    with pytest.raises(ValueError, match="trial ids must be int or str"):
        asha.report(1.5, 0, [0.5, 1.0])
    with pytest.raises(ValueError, match="values must be numbers"):
        asha.report(0, 0, ["a", 1.0])
    with pytest.raises(ValueError, match="without being promoted"):
        asha.report(0, 1, [0.5, 1.0])
    with pytest.raises(KeyError, match="reported no rung"):
        asha.status(42)
