"""Config loading: every bad input is one ConfigError line naming the key; nothing else escapes."""

from __future__ import annotations

import pytest

from emabench.config import Config, apply_overrides, load_config, parse_override
from emabench.errors import ConfigError

from .conftest import SEED_CONFIG


def test_seed_config_is_the_seed_study(seed_config: Config):
    c = seed_config
    assert (c.data.n_samples, c.data.n_features, c.data.noise, c.data.random_state) == (2000, 20, 0.1, 42)
    assert (c.data.test_size, c.data.split_random_state) == (0.2, 42)
    assert c.model.hidden_sizes == [64, 32] and c.model.dropout == 0.2 and c.model.init == "xavier_normal"
    assert (c.train.batch_size, c.train.max_epochs) == (32, 500)
    assert (c.train.optimizer.lr, c.train.optimizer.weight_decay) == (1e-3, 1e-5)
    s = c.train.scheduler
    assert (s.name, s.monitor, s.factor, s.patience) == ("reduce_on_plateau", "ema", 0.5, 10)
    assert (c.train.early_stopping.monitor, c.train.early_stopping.patience) == ("ema", 20)
    e = c.ema
    assert (e.beta, e.update_after_step, e.update_every, e.inv_gamma, e.min_value) == (0.999, 100, 1, 1.0, 0.0)
    assert e.power == pytest.approx(2 / 3)


def write(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def seed_text() -> str:
    return SEED_CONFIG.read_text()


BAD_FILES = {
    "empty": ("", "empty"),
    "list": ("- 1\n- 2\n", "mapping"),
    "syntax": ("name: [unclosed\nseed: 0\n", "c.yaml:"),
    "python tag": ("!!python/object/apply:os.system ['echo pwned']\n", "invalid YAML"),
    "unknown key": (seed_text() + "colour: blue\n", "colour: unknown key"),
    "nested unknown key": (seed_text().replace("  dropout: 0.2", "  dropout: 0.2\n  dropuot: 0.1"), "model.dropuot"),
    "wrong type": (seed_text().replace("batch_size: 32", "batch_size: many"), "train.batch_size"),
    "float for int": (seed_text().replace("batch_size: 32", "batch_size: 32.5"), "train.batch_size"),
    "beta out of range": (seed_text().replace("beta: 0.999", "beta: 1.0"), "ema.beta"),
    "dropout out of range": (seed_text().replace("dropout: 0.2", "dropout: 1.0"), "model.dropout"),
    "batch size zero": (seed_text().replace("batch_size: 32", "batch_size: 0"), "train.batch_size"),
    "negative lr": (seed_text().replace("lr: 1.0e-3", "lr: -0.1"), "train.optimizer.lr"),
    "bad device": (seed_text().replace("device: auto ", "device: tpu  "), "'auto', 'cpu' or 'cuda'"),
    "missing section": (seed_text().replace("name: regression\n", ""), "name: missing"),
    "bad name": (seed_text().replace("name: regression", "name: ../../etc"), "name"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_raise_one_line_config_error(tmp_path, case):
    text, needle = BAD_FILES[case]
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_python_tag_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, f"!!python/object/apply:os.system ['touch {marker}']\n"))
    assert not marker.exists()


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("no/such/config.yaml")


def test_yaml_syntax_error_names_the_line(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml:3"):
        load_config(write(tmp_path, "name: x\nseed: 0\ndata: {a: [1, 2}\n"))


def test_overrides_are_typed_and_validated():
    cfg = load_config(SEED_CONFIG, ["train.optimizer.lr=1e-2", "ema.beta=0.99", "model.hidden_sizes=[8, 4]"])
    assert cfg.train.optimizer.lr == 0.01 and cfg.ema.beta == 0.99 and cfg.model.hidden_sizes == [8, 4]
    assert parse_override("train.early_stopping.patience=null") == (["train", "early_stopping", "patience"], None)


@pytest.mark.parametrize(
    "override,needle",
    [
        ("ema.beta", "KEY=VALUE"),
        ("=3", "no key before '='"),
        ("ema.betta=0.9", "unknown key 'betta' in ema (allowed: beta"),
        ("colour=red", "unknown key 'colour' in the top level"),
        ("seed.x=1", "unknown key 'x' in seed"),
        ("ema.beta=1.5", "ema.beta"),
        ("train.batch_size=abc", "train.batch_size"),
    ],
)
def test_bad_overrides(override, needle):
    with pytest.raises(ConfigError) as info:
        load_config(SEED_CONFIG, [override])
    assert needle in str(info.value)


def test_apply_overrides_does_not_mutate_input():
    raw = {"ema": {"beta": 0.9}}
    assert apply_overrides(raw, ["ema.beta=0.5"]) == {"ema": {"beta": 0.5}}
    assert raw == {"ema": {"beta": 0.9}}
