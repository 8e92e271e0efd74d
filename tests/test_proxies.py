"""Zero-cost proxies on tiny networks against values computed by hand."""

import math

import torch
from torch import nn

from bitnas.evaluators.proxies import compute_proxies, grad_norm, naswot, synflow
from bitnas.spaces import Genotype, StageSpec, build_model
from bitnas.spaces.layers import QuantLinear
from bitnas.spaces.quantizers import SignSTE


def _linear(weight, bias=False):
    layer = nn.Linear(len(weight[0]), len(weight), bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight, dtype=torch.float32))
    return layer


def test_naswot_on_relu_codes_by_hand():
    # pre-activations of x1=(1,1), x2=(1,-2), x3=(-1,-1) under W=[[1,0],[0,1],[1,1]]:
    # (1,1,2) (1,-2,-1) (-1,-1,-2) -> codes 111, 100, 000; agreements K = [[3,1,0],[1,3,2],[0,2,3]]
    # det K = 3*(9-4) - 1*(3-0) = 12
    model = nn.Sequential(_linear([[1, 0], [0, 1], [1, 1]]), nn.ReLU())
    x = torch.tensor([[1.0, 1.0], [1.0, -2.0], [-1.0, -1.0]])
    assert abs(naswot(model, x) - math.log(12)) < 1e-9


def test_naswot_reads_the_codes_of_sign_activations():
    # the sign quantizer's codes of (1,1), (1,-1), (-1,-1): 11, 10, 00 -> K = [[2,1,0],[1,2,1],[0,1,2]], det 4
    model = QuantLinear(2, 2, input_quantizer=SignSTE())
    x = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    assert abs(naswot(model, x) - math.log(4)) < 1e-9


def test_synflow_by_hand():
    # |W1| = [[1,2],[3,0]], |W2| = [[1,2]], input ones: h = (3,3), R = 9.
    # layer 2: sum |W2 * h| = 1*3 + 2*3 = 9; layer 1: dR/dW1[i,j] = |W2|[i] -> 1*(1+2) + 2*(3+0) = 9
    model = nn.Sequential(_linear([[1, -2], [3, 0]]), _linear([[-1, 2]]))
    assert abs(synflow(model, (2,)) - 18.0) < 1e-9
    assert model[0].weight[0, 1].item() == -2.0  # computed on a copy


def test_grad_norm_by_hand():
    # zero weights: softmax (1/2, 1/2); dL/dlogits = (-1/2, 1/2); dL/dW = outer with x = (1, 2)
    # -> [[-0.5, -1], [0.5, 1]], norm sqrt(2.5)
    model = _linear([[0, 0], [0, 0]])
    assert abs(grad_norm(model, torch.tensor([[1.0, 2.0]]), torch.tensor([0])) - math.sqrt(2.5)) < 1e-6


def test_all_proxies_on_a_binary_network():
    torch.manual_seed(0)
    genotype = Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=8,
                        stages=(StageSpec(block="binary", width=16, depth=1, stride=2),))
    images, labels = torch.randn(16, 1, 8, 8), torch.arange(16) % 10
    scores = compute_proxies(build_model(genotype), images, labels)
    assert set(scores) == {"naswot", "synflow", "grad_norm", "params", "bops"}
    assert all(math.isfinite(v) and v > 0 for v in scores.values())
    assert scores["bops"] == 8 * 16 * 9 * 4 * 4 * 1  # the binary 3x3 conv, 8 -> 16 channels on a 4x4 output


def test_prefilter_skips_training_below_the_threshold_only():
    from bitnas.evaluators import EvalRequest, LatencyConfig, TrainingConfig
    from bitnas.evaluators.evaluate import evaluate
    from bitnas.evaluators.proxies import ProxyPrefilter

    assert not ProxyPrefilter(threshold=None).rejects(-1e9)
    assert ProxyPrefilter(threshold=1.0).rejects(0.5) and not ProxyPrefilter(threshold=1.0).rejects(1.0)
    genotype = Genotype(input_size=8, in_channels=1, num_classes=10, stem_width=8,
                        stages=(StageSpec(block="binary", width=16, depth=1, stride=2),))
    base = dict(dataset="digits", training=TrainingConfig(epochs=0.5), energy_meter="off",
                latency=LatencyConfig(runs=30, warmup=1, target="torch-cpu"))
    scored = evaluate(genotype.to_json(), EvalRequest(**base, prefilter=ProxyPrefilter("synflow", threshold=None)))
    skipped = evaluate(genotype.to_json(), EvalRequest(**base, prefilter=ProxyPrefilter("synflow", threshold=float("inf"))))
    assert scored.metrics["train_steps"] > 0 and not scored.stopped_early and "skipped_by_proxy" not in scored.metrics
    assert skipped.metrics["train_steps"] == 0 and skipped.stopped_early and skipped.metrics["skipped_by_proxy"] == 1.0
    # the score does not depend on whether the network is then trained, and scoring leaves the model alone
    assert scored.metrics["proxy_synflow"] == skipped.metrics["proxy_synflow"] > 0
    assert skipped.epoch_val_accuracy == [] and 0 <= skipped.metrics["val_accuracy"] <= 1
