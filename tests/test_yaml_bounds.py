"""No input can hang the machine or flood the terminal. A YAML alias bomb, a deep or huge
document, a big or endless file are refused before they cost more than a few MB, and every error is one capped line.
(Time is not asserted — the machine is shared — but the bomb's memory is, with tracemalloc; the README quotes both.)
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from emabench.cli import app
from emabench.config import load_config, parse_yaml
from emabench.config.yaml_io import MAX_DEPTH, MAX_NODES, MAX_YAML_CHARS
from emabench.errors import MAX_MESSAGE, ConfigError, RunError

from .conftest import SEED_CONFIG

runner = CliRunner()


def billion_laughs(levels: int = 9, width: int = 9) -> str:
    """The classic bomb: each level lists ``width`` aliases of the one below — ``width ** levels`` strings."""
    lines = [f"l0: &l0 [{', '.join(['lol'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message and len(message) <= MAX_MESSAGE
    return message


def test_an_alias_bomb_is_refused_in_a_few_mb(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())
    tracemalloc.start()
    try:
        message = refused(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (
        message
        == f"{path}: invalid YAML: more than {MAX_NODES:,} YAML nodes once aliases are expanded (an alias bomb?)"
    )
    assert peak < 5 * 2**20, f"{peak / 2**20:.1f} MiB"  # measured ~0.1 MiB; unbounded it took 16.7 GB


def test_an_alias_bomb_in_a_set_value_is_refused_too():
    bomb = "{" + billion_laughs(6, 9).replace("\n", ", ").rstrip(", ") + "}"
    with pytest.raises(ConfigError, match="alias bomb"):
        load_config(SEED_CONFIG, [f"averagers={bomb}"])


def test_shared_aliases_below_the_bound_still_load():
    text = billion_laughs(4, 9)  # 9**4 = 6,561 strings once expanded: a big but honest document
    assert len(parse_yaml(text, "t")["l4"]) == 9


def test_an_alias_that_contains_itself_is_refused():
    with pytest.raises(ConfigError, match="recursive structure"):
        parse_yaml("a: &a [1, *a]\n", "t")


@pytest.mark.parametrize("opening,closing", [("[", "]"), ("{a: ", "}")])
def test_nesting_is_bounded(opening, closing):
    with pytest.raises(ConfigError, match=f"nested too deeply \\(more than {MAX_DEPTH} levels\\)"):
        parse_yaml(opening * (MAX_DEPTH + 1) + "1" + closing * (MAX_DEPTH + 1), "t")
    assert parse_yaml("[" * 10 + "1" + "]" * 10, "t") == [[[[[[[[[[1]]]]]]]]]]


def test_nesting_through_aliases_is_bounded():
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, MAX_DEPTH + 2)]
    with pytest.raises(ConfigError, match="nested too deeply once aliases are expanded"):
        parse_yaml("\n".join(lines), "t")


def test_the_number_of_nodes_is_bounded_without_aliases_too():
    with pytest.raises(ConfigError, match=f"more than {MAX_NODES:,} YAML nodes"):
        parse_yaml("[" + "0," * MAX_NODES + "0]", "t")


def test_text_longer_than_the_bound_is_not_parsed():
    with pytest.raises(ConfigError, match="characters of YAML, more than"):
        parse_yaml("#" * (MAX_YAML_CHARS + 1), "t")


def test_a_big_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("wb") as stream:
        stream.truncate(10 * 2**30)  # sparse: 10 GiB that take no disk, and would take minutes to read
    assert refused(path) == f"{path}: larger than {MAX_YAML_CHARS:,} bytes; a config is a few KB of YAML"


def test_a_device_or_pipe_is_not_read_as_a_config():
    assert refused(Path("/dev/zero")) == "/dev/zero: not a regular file; give a YAML config file"


def test_a_binary_file_is_refused_as_not_text(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"name: \xff\xfe\n")
    assert refused(path) == f"{path}: not a UTF-8 text file (byte 6); a config is YAML text"


def test_200k_unknown_keys_print_one_short_line(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(SEED_CONFIG.read_text() + "".join(f"unknown_key_{i}: {i}\n" for i in range(200_000)))
    result = runner.invoke(app, ["run", str(path), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and len(result.output) < MAX_MESSAGE + 20, len(result.output)
    assert "larger than" in result.output and not (tmp_path / "runs").exists()


def test_every_error_message_is_one_capped_line():
    for error in (ConfigError, RunError):
        message = str(error("a\nb" + "x" * 10**6))
        assert message.startswith("a b") and len(message) <= MAX_MESSAGE and "\n" not in message
        assert message.endswith("more characters)")


def test_an_unreadable_config_is_refused_in_one_line(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text(SEED_CONFIG.read_text())

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", denied)  # root reads any file: simulate the permission instead
    assert refused(path) == f"{path}: cannot read the config (Permission denied)"
