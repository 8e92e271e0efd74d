"""The early-stopping rule on scripted learning curves: a median rule at equal epochs among
finished trials, on validation accuracy alone."""

from bitnas.evaluators import EarlyStoppingRule

PEERS = [
    [0.50, 0.70, 0.80],
    [0.60, 0.75, 0.85],
    [0.40, 0.65],          # itself stopped after 2 epochs: counts at epochs 1 and 2 only
    [0.70, 0.80, 0.90],
]


def test_median_rule_at_equal_epochs():
    rule = EarlyStoppingRule(grace_epochs=1, min_trials=3, percentile=50)
    # epoch 1: peers 0.5 0.6 0.4 0.7 -> median 0.55
    assert rule.should_stop(1, [0.54], PEERS)
    assert not rule.should_stop(1, [0.55], PEERS)   # equal to the median is not below it
    # epoch 2: peers 0.70 0.75 0.65 0.80 -> median 0.725
    assert rule.should_stop(2, [0.9, 0.72], PEERS)  # judged at epoch 2 only, not by its past
    assert not rule.should_stop(2, [0.1, 0.73], PEERS)
    # epoch 3: only 3 peers reached it (0.80 0.85 0.90) -> median 0.85
    assert rule.should_stop(3, [0.6, 0.7, 0.84], PEERS)
    assert not EarlyStoppingRule(min_trials=4).should_stop(3, [0.6, 0.7, 0.1], PEERS)  # too few peers there


def test_grace_min_trials_and_switch():
    assert not EarlyStoppingRule(grace_epochs=2).should_stop(1, [0.0], PEERS)
    assert not EarlyStoppingRule(min_trials=5).should_stop(1, [0.0], PEERS)
    assert not EarlyStoppingRule(enabled=False).should_stop(2, [0.0, 0.0], PEERS)
    assert not EarlyStoppingRule().should_stop(1, [0.0], [])


def test_higher_percentile_stops_more_like_successive_halving():
    # eta = 4 keeps the top quarter: percentile 75 of (0.4, 0.5, 0.6, 0.7) is 0.625
    halving = EarlyStoppingRule(min_trials=4, percentile=75)
    assert halving.should_stop(1, [0.62], PEERS) and not halving.should_stop(1, [0.63], PEERS)


def test_a_scripted_sequence_of_trials_stops_the_right_ones():
    """Trials finish one after another; each is judged against those finished before it."""
    rule = EarlyStoppingRule(grace_epochs=1, min_trials=2, percentile=50)
    curves = [[0.5, 0.6, 0.7], [0.6, 0.7, 0.8], [0.3, 0.5, 0.6], [0.7, 0.8, 0.9], [0.55, 0.9, 0.95], [0.45, 0.5, 0.5]]
    finished, stopped_at = [], []
    for curve in curves:
        should_stop = rule.callback(finished)
        done = []
        for epoch, value in enumerate(curve, start=1):
            done.append(value)
            if epoch < len(curve) and should_stop(epoch, done):
                break
        stopped_at.append(len(done) if len(done) < len(curve) else None)
        finished.append(done)
    # trial 3: epoch-1 median of (0.5, 0.6) is 0.55 > 0.3 -> stops after 1
    # trial 4: above every median -> runs to the end
    # trial 5: epoch 1 median of (0.5, 0.6, 0.3, 0.7) = 0.55: 0.55 is not below; epoch 2 peers
    #          (0.6, 0.7, 0.8) median 0.7 < 0.9 -> runs to the end
    # trial 6: 0.45 < median of (0.5, 0.6, 0.3, 0.7, 0.55) = 0.55 -> stops after 1
    assert stopped_at == [None, None, 1, None, None, 1]
