"""What a config error says. One line, in our words (never pydantic's "Unable to extract tag"),
the key as the user wrote it (no union tag doubled into it), blamed on where the mistake came from (the file, the
``--set``, the ``--grid``), naming what is allowed — for the averagers' ``kind`` today and for any discriminated
union (``data`` by ``source``, ``model`` by ``name``) the schema gains."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import apply_overrides, load_config, parse_override
from emabench.config.keys import walk_loc
from emabench.config.validate import format_validation_error
from emabench.errors import ConfigError

from .conftest import SEED_CONFIG

runner = CliRunner()
KINDS = "ema, constant_ema, tf_ema, bias_corrected_ema, scheduled_ema, adaptive_ema, swa, power_ema, posthoc"


def error_of(*overrides: str, path=SEED_CONFIG) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(overrides))
    message = str(info.value)
    assert "\n" not in message and "Unable to extract tag" not in message and "Input tag" not in message
    return message


def cli_error(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1, result.output
    return result.exit_code, result.output.strip().removeprefix("error: ")


# --- averagers: the discriminated union of today --------------------------------------------------------------------


def test_setting_a_field_of_an_averager_that_does_not_exist_says_so():
    message = error_of("averagers.swa.start_epoch=30")
    assert message == (
        "--set 'averagers.swa.start_epoch=30': no averager 'swa' exists (configs/regression.yaml has none)"
        "; a new one needs its kind too: add --set averagers.swa.kind=swa (allowed kinds: " + KINDS + ")"
    ).replace("configs/regression.yaml", str(SEED_CONFIG))


def test_a_new_averager_with_its_kind_given_by_another_set_is_fine():
    config = load_config(SEED_CONFIG, ["averagers.swa.kind=swa", "averagers.swa.start_epoch=30"])
    assert config.averagers["swa"].start_epoch == 30


def test_a_new_averager_named_otherwise_gets_a_placeholder_kind():
    message = error_of("averagers.late.start_epoch=30")
    assert "no averager 'late' exists" in message and "add --set averagers.late.kind=KIND" in message


@pytest.mark.parametrize(
    "override,expected",
    [
        ("averagers.swa={start_epoch: 30}", f"averagers.swa: missing 'kind' (one of: {KINDS})"),
        ("averagers.swa={kind: swo}", f"averagers.swa.kind: unknown kind 'swo' (allowed: {KINDS})"),
        ("averagers.swa={kind: 3}", f"averagers.swa.kind: unknown kind 3 (allowed: {KINDS})"),
        (
            "averagers.swa=3",
            f"averagers.swa: expected a mapping of settings with its kind (one of: {KINDS}), got int 3",
        ),
        ("averagers.swa={kind: swa, start_epoch: -1}", "averagers.swa.start_epoch: Input should be greater than or"),
        (
            "averagers.swa={kind: swa, start_epoch: 1, bogus: 2}",
            "averagers.swa.bogus: unknown key (allowed: buffers, kind, ",
        ),
        ("averagers.swa={kind: swa}", "averagers.swa.start_epoch: missing required key"),
    ],
)
def test_averager_errors_name_the_entry_and_the_allowed_values_without_doubling_the_path(override, expected):
    message = error_of(override)
    assert message.startswith(f"--set {override!r}: ") and expected in message
    assert "averagers.swa.swa" not in message


def test_an_unknown_key_of_an_averager_lists_its_own_kind_keys_only():
    message = error_of("averagers.swa={kind: swa, start_epoch: 1, beta: 0.9}")
    assert "allowed: buffers, kind, start_epoch, every_steps)" in message


def test_errors_in_the_file_are_blamed_on_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(SEED_CONFIG.read_text() + "averagers:\n  swa: {kind: swa, start_epoch: -1}\n")
    message = error_of(path=path)
    assert message.startswith(f"{path}: averagers.swa.start_epoch: ")


def test_a_whole_config_check_names_the_file_and_the_sets_that_changed_it():
    message = error_of("averagers.swa={kind: swa, start_epoch: 30}", "train.max_epochs=10")
    assert message.startswith(f"{SEED_CONFIG} with --set 'averagers.swa={{kind: swa, start_epoch: 30}}', ")
    assert "30 is not before train.max_epochs (10)" in message


# --- blame: --set, --grid, the file --------------------------------------------------------------------------------


def test_a_bad_set_value_is_blamed_on_the_set_not_the_file():
    assert error_of("seed=abc") == "--set 'seed=abc': seed: Input should be a valid integer (got 'abc')"


def test_a_bad_set_yaml_value_is_blamed_on_the_set_without_a_line_number():
    assert error_of("seed=[").startswith("--set 'seed=[': invalid YAML: ")


@pytest.mark.parametrize(
    "grid,expected",
    [
        ("=0.1", "--grid '=0.1': no key before '='"),
        ("train.optimizer.lrr=0.1,0.2", "--grid 'train.optimizer.lrr=0.1,0.2': unknown key 'lrr' in train.optimizer"),
    ],
)
def test_a_bad_grid_key_is_blamed_on_the_grid_with_its_whole_value(tmp_path, grid, expected):
    code, message = cli_error("sweep", SEED_CONFIG, "--grid", grid, "--runs-dir", tmp_path)
    assert code == 2 and message.startswith(expected), message
    assert "--set" not in message


def test_a_directory_given_as_config_is_called_a_directory(tmp_path):
    (tmp_path / "a.yaml").write_text("name: x\n")
    code, message = cli_error("run", tmp_path, "--runs-dir", tmp_path / "runs")
    assert (
        code == 2
        and message == f"{tmp_path}: is a directory, not a config file; give a YAML file (YAML files in it: a.yaml)"
    )


def test_a_long_set_value_is_quoted_shortened_and_the_problem_still_shows():
    message = error_of("averagers=" + "[" * 1000 + "]" * 1000)
    assert "nested too deeply" in message and len(message) < 400


# --- any discriminated union: data by source, model by name, entries by kind ----------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Synthetic(_Strict):
    source: Literal["make_regression"]
    n_samples: int = Field(ge=10)


class Csv(_Strict):
    source: Literal["csv"]
    path: str
    target: str


class Mlp(_Strict):
    name: Literal["mlp"]
    hidden_sizes: list[int]


class LeNet(_Strict):
    name: Literal["lenet"]
    channels: int


class Swa(_Strict):
    kind: Literal["swa"]
    start_epoch: int


class Ema(_Strict):
    kind: Literal["ema"]
    beta: float


class Future(_Strict):
    """The shape the config is growing into: every section a discriminated union."""

    seed: int
    data: Annotated[Synthetic | Csv, Field(discriminator="source")]
    model: Annotated[Mlp | LeNet, Field(discriminator="name")]
    averagers: dict[str, Annotated[Swa | Ema, Field(discriminator="kind")]] = {}


GOOD = {
    "seed": 0,
    "data": {"source": "make_regression", "n_samples": 100},
    "model": {"name": "mlp", "hidden_sizes": [8]},
}


def future_error(document: dict, overrides=()) -> str:
    with pytest.raises(ValidationError) as info:
        Future.model_validate(document)
    message = format_validation_error(info.value, "f.yaml", overrides, root=Future)
    assert "Unable to extract tag" not in message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "section,value,expected",
    [
        ("data", {"n_samples": 100}, "f.yaml: data: missing 'source' (one of: make_regression, csv)"),
        (
            "data",
            {"source": "parquet"},
            "f.yaml: data.source: unknown source 'parquet' (allowed: make_regression, csv)",
        ),
        ("data", {"source": "csv", "path": "x.csv"}, "f.yaml: data.target: missing required key"),
        ("data", {"source": "make_regression", "n_samples": 1}, "f.yaml: data.n_samples: Input should be greater"),
        (
            "data",
            {"source": "csv", "path": "a", "target": "y", "n_samples": 5},
            "f.yaml: data.n_samples: unknown key (allowed: source, path, target)",
        ),
        ("model", {"hidden_sizes": [8]}, "f.yaml: model: missing 'name' (one of: mlp, lenet)"),
        ("model", {"name": "vit"}, "f.yaml: model.name: unknown name 'vit' (allowed: mlp, lenet)"),
        ("model", 7, "f.yaml: model: expected a mapping of settings with its name (one of: mlp, lenet), got int 7"),
        ("averagers", {"a": {"kind": "swa", "start_epoch": "x"}}, "f.yaml: averagers.a.start_epoch: Input should be"),
        ("averagers", {"a": {"start_epoch": 3}}, "f.yaml: averagers.a: missing 'kind' (one of: swa, ema)"),
    ],
)
def test_any_discriminated_union_is_described_by_its_discriminator(section, value, expected):
    assert future_error(GOOD | {section: value}).startswith(expected)


def test_error_locations_drop_the_union_tags_pydantic_inserts():
    parts, slot = walk_loc(("averagers", "a", "swa", "start_epoch"), Future)
    assert parts == ["averagers", "a", "start_epoch"]
    parts, slot = walk_loc(("data", "csv"), Future)
    assert parts == ["data"] and slot.keys() == ["source", "path", "target"]


@pytest.mark.parametrize(
    "override", ["data.n_samples=500", "data.path=x.csv", "model.channels=3", "averagers.a.beta=0.9"]
)
def test_set_keys_are_checked_against_any_member_of_a_union(override):
    path, _ = parse_override(override, root=Future)
    assert path == override.split("=")[0].split(".")


def test_set_keys_of_no_member_are_refused_with_every_members_keys():
    with pytest.raises(ConfigError) as info:
        parse_override("data.n_sample=500", root=Future)
    assert str(info.value) == (
        "--set 'data.n_sample=500': unknown key 'n_sample' in data (allowed: source, n_samples, path, target)"
    )


def test_a_set_on_a_union_section_is_blamed_on_the_set():
    raw = apply_overrides(GOOD, ["data.n_samples=5"], root=Future)
    message = future_error(raw, overrides=[(["data", "n_samples"], "data.n_samples=5")])
    assert message.startswith("--set 'data.n_samples=5': data.n_samples: Input should be greater than or equal to 10")


def test_a_new_entry_of_any_dict_of_unions_needs_its_discriminator():
    with pytest.raises(
        ConfigError, match=r"no averager 'b' exists .* add --set averagers.b.kind=KIND \(allowed kinds: swa, ema\)"
    ):
        apply_overrides(GOOD, ["averagers.b.beta=0.9"], "f.yaml", root=Future)


# --- one line, capped ------------------------------------------------------------------------------------------------


def test_many_problems_are_listed_up_to_a_count():
    bad = {k: "x" for k in ("seed",)} | {"data": {"source": "csv"}, "model": {"name": "mlp"}}
    message = future_error(bad | {"averagers": {f"a{i}": {"kind": "ema", "beta": "b"} for i in range(20)}})
    assert "… and " in message and message.endswith("more problems")


def test_thousands_of_unknown_keys_make_one_short_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(SEED_CONFIG.read_text() + "".join(f"colour{i}: {i}\n" for i in range(20_000)))
    message = error_of(path=path)
    assert message.startswith(f"{path}: the top level: unknown keys 'colour0', 'colour1'")
    allowed = "name, seed, device, task, loss, metrics, data, model, train, ema, averagers, report, track"
    assert f"… and 19,990 more (allowed: {allowed})" in message
    assert len(message) < 1000


def test_run_without_arguments_does_not_say_not_both(tmp_path, monkeypatch):
    # `emabench run` trains the shipped seed study; a --set mistake is still its own one-line error
    code, message = cli_error("run", "--set", "seed=abc", "--runs-dir", tmp_path)
    assert code == 2 and message == "--set 'seed=abc': seed: Input should be a valid integer (got 'abc')"
    assert "not both" not in message
