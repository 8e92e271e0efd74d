"""One schema from config to worker: each setting declared once, one function from config to
request, and config validation that needs no heavy library."""

from __future__ import annotations

import subprocess
import sys

from bitnas.evaluators.settings import DataSettings, EarlyStoppingRule, LatencyConfig, TrainingConfig
from bitnas.search.config import SearchConfig, load_config
from bitnas.search.requests import eval_request


def test_the_config_sections_are_the_settings_the_workers_read():
    config = SearchConfig()
    assert type(config.training) is TrainingConfig and type(config.early_stopping) is EarlyStoppingRule
    assert type(config.data) is DataSettings and isinstance(config.latency, LatencyConfig)
    # One default each: what the YAML gives is what the worker receives.
    assert config.training == TrainingConfig() and config.early_stopping == EarlyStoppingRule()


def test_eval_request_carries_every_setting_of_the_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: digits\nseed: 4\ndata: {image_size: 16, normalise: none}\n"
                    "training: {epochs: 2, batch_size: 17, lr: 0.01, augment: shift}\n"
                    "latency: {runs: 40, threads: 2, target: torch-cpu}\nray: {num_cpus_per_trial: 2}\n"
                    "energy_meter: 'off'\n")
    config = load_config(path)
    request = eval_request(config, 7, peer_curves=((0.5,),) * 5)
    assert request.training == config.training and request.training.batch_size == 17
    assert (request.latency.runs, request.latency.threads, request.latency.target) == (40, 2, "torch-cpu")
    assert request.data.image_size == 16 and request.data.normalise == "none" and request.data.path is None
    assert request.train_threads == 2  # the CPUs Ray reserves for the trial are the ones it trains on
    assert request.seed == 4 * 100_003 + 7 and request.data_seed == 4 and request.energy_meter == "off"
    assert request.early_stopping == config.early_stopping
    assert eval_request(config, 7).early_stopping is None  # no finished peers yet: nothing to compare with


def test_validating_a_config_imports_no_heavy_library():
    code = ("import sys; from bitnas.search.config import load_config; load_config(None, {'trials': 3}); "
            "print(sorted(m for m in ('torch', 'ray', 'mlflow', 'optuna', 'numba') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_bad_search_input_is_answered_before_torch_is_imported():
    code = ("import sys\nfrom bitnas.cli import main\ncode = main(['search', '--trials', '-3'])\n"
            "print(code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "2 False", done.stderr
    assert done.stderr.strip() == "bitnas: error: trials: Input should be greater than or equal to 1 (got -3)"
