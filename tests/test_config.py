from pathlib import Path

import pytest

from bitnas.search.config import ConfigError, SearchConfig, load_config

REPO = Path(__file__).resolve().parents[1]


def test_shipped_default_config_equals_embedded_defaults():
    assert load_config(REPO / "configs" / "default.yaml") == SearchConfig()


def test_flags_override_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("trials: 7\ntraining:\n  epochs: 3\n  lr: 0.01\n")
    config = load_config(path, {"trials": 9, "epochs": None, "study": "abc"})
    assert (config.trials, config.training.epochs, config.training.lr, config.study) == (9, 3.0, 0.01, "abc")


def test_epochs_flag_reaches_the_nested_key():
    assert load_config(None, {"epochs": 0.25}).training.epochs == 0.25


@pytest.mark.parametrize("text, message", [
    ("trials: [1, 2\n", r"malformed YAML at line 2"),
    ("trails: 5\n", r"^.*c\.yaml: trails: unknown key$"),
    ("training:\n  epochs: -1\n", r"training\.epochs: Input should be greater than 0 \(got -1\)"),
    ("workers: 0\n", r"workers: Input should be greater than or equal to 1"),
    ("objectives: [accuracy, speed]\n", r"objectives: unknown objective 'speed'"),
    ("space:\n  blocks: [binary, magic]\n", r"space\.blocks.*unknown block 'magic'"),
    ("study: 'a b'\n", r"study: must be"),
    ("- just\n- a list\n", r"must be a mapping"),
])
def test_bad_config_is_one_line_naming_the_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(path)
    assert "\n" not in str(raised.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")


def test_every_sampler_the_config_accepts_can_be_built_and_proposes():
    """A sampler name the config validates must not fail later inside the driver."""
    from typing import get_args

    import optuna

    from bitnas.search.samplers import make_sampler

    names = get_args(SearchConfig.model_fields["sampler"].annotation)
    assert set(names) == {"random", "tpe", "nsga2", "gp", "local"}
    for name in names:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(name, 0))
        trial = study.ask()
        assert trial.suggest_categorical("block", ["binary", "float"]) in {"binary", "float"}


def test_samplers_leave_random_start_up_within_the_budget():
    """A 20-trial search gets at least four NSGA-II generations and TPE proposals after 4 random
    trials; long studies keep Optuna's own sizes; never fewer than the parallel workers."""
    import optuna

    from bitnas.search.samplers import make_sampler, population_size, startup_trials

    assert (population_size(20), startup_trials(20)) == (5, 4)
    assert (population_size(1000), startup_trials(1000)) == (50, 10)
    assert (population_size(20, workers=8), startup_trials(20, workers=8)) == (8, 8)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler("nsga2", 0, trials=20))
    for index in range(11):
        trial = study.ask()
        x = trial.suggest_float("x", 0, 1)
        study.tell(trial, [x, index % 3])
    generations = [t.system_attrs.get("NSGAIISampler:generation") for t in study.trials]
    assert generations[:5] == [0] * 5 and generations[5:10] == [1] * 5 and generations[10] == 2


def test_the_default_accuracy_floor_keeps_chance_level_networks_off_the_front():
    from bitnas.search.config import ConstraintsSection
    from bitnas.search.constraints import accuracy_floor, constraint_values, violations

    section = ConstraintsSection()
    assert accuracy_floor(section, 10) == pytest.approx(0.19) and accuracy_floor(section, 2) == pytest.approx(0.55)
    guessing = constraint_values(section, {"val_accuracy": 0.1}, num_classes=10)
    assert violations(guessing) == ["val_accuracy < accuracy_floor"]
    assert violations(constraint_values(section, {"val_accuracy": 0.5}, num_classes=10)) == []
    assert constraint_values(ConstraintsSection(accuracy_floor=None), {"val_accuracy": 0.1}, num_classes=10) == {}


def test_fully_binary_config_samples_only_fully_binary_networks_the_engine_runs_natively():
    """configs/fully_binary.yaml: every network of its space is W1A1 in every hidden conv
    (CostReport.not_fully_binary) and compiles with no simulated or torch-fallback layer."""
    import itertools

    from bitnas.evaluators.engine import compile_model
    from bitnas.spaces import build_model, count_costs

    config = load_config(REPO / "configs" / "fully_binary.yaml")
    choices = config.space.choices()
    assert config.space.size() == 128  # with and without the stem's max pool (the default's stem_pools)
    for values in itertools.product(*choices.values()):
        genotype = config.space.decode(dict(zip(choices, values)), input_size=28, in_channels=1, num_classes=10)
        model = build_model(genotype).eval()
        assert count_costs(model, (1, 28, 28)).not_fully_binary() is None, genotype.short()
        engine = compile_model(model, (1, 28, 28))
        assert not engine.simulated and not engine.fallbacks, genotype.short()
