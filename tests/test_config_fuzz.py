"""Property-based: whatever YAML document, bytes or ``--set`` string a user gives, ``load_config`` returns a valid
:class:`Config` or raises :class:`ConfigError` — never another exception (which the CLI would show as a traceback).

Every example is tallied; the totals are printed at the end of the module (``config fuzz: ...``). The default
suite runs a few hundred examples per property in a few seconds; ``-m slow`` runs many more.
"""

from __future__ import annotations

import copy
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emabench.config import Config, load_config

from .conftest import SEED_CONFIG

SEED = yaml.safe_load(SEED_CONFIG.read_text())
TALLY: Counter[str] = Counter()

# --- strategies -----------------------------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["raw", "ema", "adam", "cpu", "auto", "cuda", "rel", "swa", "posthoc", "1e-3", "null", "~", ""]),
)
plausible = st.sampled_from([0.01, 0.5, 1, 3, 10, 0.0, True, False, None, [16, 8], "rel", "raw", "ema"])
keys = st.one_of(st.text(max_size=12), st.sampled_from(sorted(SEED) + ["kind", "beta", "averagers", "ema"]))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=6)),
    max_leaves=30,
)


def leaf_paths(node: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if isinstance(node, dict):
        return [prefix] + [p for k, v in node.items() for p in leaf_paths(v, (*prefix, k))]
    return [prefix]


SEED_PATHS = leaf_paths(SEED)
AVERAGER_SPECS = [
    {"kind": "ema", "beta": 0.99, "update_after_step": 10, "inv_gamma": 1.0, "power": 0.75},
    {"kind": "swa", "start_epoch": 3},
    {"kind": "posthoc", "sigma_rels": [0.05, 0.2], "snapshot_every": 10, "targets": [0.1]},
    {"kind": "power_ema", "sigma_rel": 0.1},
    {"kind": "tf_ema", "half_life": {"value": 2, "unit": "epochs"}},
]


@st.composite
def mutated_seed(draw: st.DrawFn) -> dict[str, Any]:
    """The seed config with 1-4 edits: a value replaced, a key deleted or added, an averager added and broken."""
    doc = copy.deepcopy(SEED)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(SEED_PATHS))
        parent = doc
        for part in path[:-1]:
            if not isinstance(parent.get(part), dict):
                break
            parent = parent[part]
        else:
            action = draw(st.sampled_from(["plausible", "replace", "delete", "add", "averager"]))
            last = path[-1] if path else draw(keys)
            if action == "plausible":
                parent[last] = draw(plausible)
            elif action == "replace":
                parent[last] = draw(documents)
            elif action == "delete":
                parent.pop(last, None)
            elif action == "add":
                parent[draw(keys)] = draw(scalars)
            else:
                spec = dict(draw(st.sampled_from(AVERAGER_SPECS)))
                spec[draw(st.sampled_from(sorted(spec)))] = draw(scalars)
                if not isinstance(doc.get("averagers"), dict):
                    doc["averagers"] = {}
                doc["averagers"][draw(keys)] = spec
    return doc


dotted_keys = st.one_of(
    st.sampled_from([".".join(p) for p in SEED_PATHS if p]),
    st.lists(keys, min_size=1, max_size=4).map(".".join),
    st.just("averagers.extra.kind"),
    st.text(max_size=15),
)
set_values = st.one_of(
    plausible.map(lambda v: yaml.safe_dump(v, default_flow_style=True).removesuffix("\n...\n").strip()),
    st.text(max_size=20),
    documents.map(lambda d: yaml.safe_dump(d, default_flow_style=True).strip()),
    scalars.map(str),
)
set_strings = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from([".".join(p) for p in SEED_PATHS if p]), set_values),
    st.builds(lambda k, v: f"{k}={v}", dotted_keys, set_values),
    st.text(max_size=30),
)

# --- the property ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folder(request: pytest.FixtureRequest) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None and TALLY:
        total = sum(TALLY.values())
        refused = sum(n for k, n in TALLY.items() if k.endswith("refused"))
        detail = ", ".join(f"{k} {n}" for k, n in sorted(TALLY.items()))
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\nconfig fuzz: {total} inputs, {refused} refused with ConfigError ({detail})")


def check(kind: str, load: Callable[[], Config]) -> None:
    """``load()`` gives a Config or raises ConfigError; any other exception fails the property."""
    from emabench.errors import ConfigError

    try:
        config = load()
    except ConfigError as err:
        assert str(err), "a ConfigError says what is wrong"
        TALLY[f"{kind} refused"] += 1
        return
    assert isinstance(config, Config)
    TALLY[f"{kind} valid"] += 1


def write(folder: Path, data: bytes) -> Path:
    path = folder / "fuzz.yaml"
    path.write_bytes(data)
    return path


FAST = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MANY = settings(max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def yaml_documents(folder: Path, doc: Any) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    check("yaml document", lambda: load_config(write(folder, text.encode("utf-8"))))


def seed_mutations(folder: Path, doc: dict[str, Any]) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False)
    check("mutated seed", lambda: load_config(write(folder, text.encode("utf-8"))))


def raw_bytes(folder: Path, data: bytes) -> None:
    check("raw text/bytes", lambda: load_config(write(folder, data)))


def set_overrides(overrides: list[str]) -> None:
    check("--set", lambda: load_config(SEED_CONFIG, overrides))


RAW = st.one_of(st.text().map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=200))
PROPERTIES = {
    "yaml_documents": (yaml_documents, documents),
    "seed_mutations": (seed_mutations, mutated_seed()),
    "raw_bytes": (raw_bytes, RAW),
}


@pytest.mark.parametrize("name", list(PROPERTIES))
def test_any_file_gives_a_config_or_a_config_error(folder: Path, name: str):
    prop, strategy = PROPERTIES[name]
    FAST(given(strategy)(lambda value: prop(folder, value)))()


def test_any_set_string_gives_a_config_or_a_config_error(folder: Path):
    FAST(given(st.lists(set_strings, min_size=1, max_size=3))(set_overrides))()


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PROPERTIES))
def test_many_files(folder: Path, name: str):
    prop, strategy = PROPERTIES[name]
    MANY(given(strategy)(lambda value: prop(folder, value)))()


@pytest.mark.slow
def test_many_set_strings(folder: Path):
    MANY(given(st.lists(set_strings, min_size=1, max_size=3))(set_overrides))()


# --- what the fuzzing found (fixed in config.py) ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["[" * 1000 + "]" * 1000, "{a: " * 1000 + "1" + "}" * 1000])
def test_deep_nesting_is_a_config_error_not_a_recursion_error(folder: Path, text: str):
    from emabench.errors import ConfigError

    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(SEED_CONFIG, [f"averagers={text}"])
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(write(folder, f"averagers: {text}\n".encode()))


@pytest.mark.parametrize(
    "override",
    [
        "averagers.p={kind: power_ema, gamma: .inf}",  # passed gt=-1, then PowerEMA raised ValueError at build time
        "averagers.p={kind: tf_ema, half_life: {value: .inf, unit: epochs}}",  # likewise in decay_for_horizon
        "train.optimizer.lr=.nan",
        "data.noise=.inf",
    ],
)
def test_inf_and_nan_are_refused_where_they_are_read(override: str):
    from emabench.errors import ConfigError

    with pytest.raises(ConfigError, match="finite number"):
        load_config(SEED_CONFIG, [override])
