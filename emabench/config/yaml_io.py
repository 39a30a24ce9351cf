"""Safe, bounded YAML: the loader every config, ``--set`` value and run folder's config.yaml goes through, and the
dumper.

YAML 1.2 floats (``1e-5`` is a float), duplicate keys refused, no Python tags ever constructed; errors are one
:class:`~emabench.errors.ConfigError` line naming the source and line. Bounded: a document may hold at most
:data:`MAX_YAML_CHARS` characters, :data:`MAX_NODES` nodes *after alias expansion* and :data:`MAX_DEPTH` levels of
nesting, all checked on the composed node graph before any Python object is built — an alias bomb ("billion
laughs": a few hundred bytes that expand to 9⁹ nodes) is refused in milliseconds, not after gigabytes.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from emabench.errors import ConfigError

# A config is a few hundred nodes and a few KB (the seed study: ~70 nodes, 3 KB); these leave a wide margin and
# still refuse a hostile file long before it costs more than a few MB.
MAX_YAML_CHARS = 1_000_000
MAX_NODES = 100_000
MAX_DEPTH = 64


class _Bounds(Exception):
    """A document past one of the bounds (raised inside the loader, turned into a ConfigError by parse_yaml)."""


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-5`` as a float (YAML 1.2), where PyYAML 1.1 reads a string, and
    refuses documents nested deeper than :data:`MAX_DEPTH` or composed of more than :data:`MAX_NODES` nodes."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._composed = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # PyYAML composes recursively; counting here stops a deep or huge document before the stack or memory goes.
        self._depth += 1
        self._composed += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Bounds(f"nested too deeply (more than {MAX_DEPTH} levels)")
            if self._composed > MAX_NODES:
                raise _Bounds(f"more than {MAX_NODES:,} YAML nodes (a config has a few hundred)")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_mapping_no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (each name may appear once)", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_no_duplicates)

_FLOAT_RE = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
    r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.Inf|\.INF|\.nan|\.NaN|\.NAN)$"
)
_SafeLoader.yaml_implicit_resolvers = copy.deepcopy(yaml.SafeLoader.yaml_implicit_resolvers)
for _first in list("-+0123456789."):
    _SafeLoader.yaml_implicit_resolvers[_first] = [
        (tag, regexp)
        for tag, regexp in _SafeLoader.yaml_implicit_resolvers.get(_first, [])
        if tag != "tag:yaml.org,2002:float"
    ]
    _SafeLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_RE, [_first])


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def check_expanded_size(root: yaml.Node) -> None:
    """Raise :class:`_Bounds` if the document, with every alias expanded, has more than :data:`MAX_NODES` nodes,
    is deeper than :data:`MAX_DEPTH`, or refers to itself. Each composed node is visited once (sizes are memoized
    on the shared node graph), so a billion laughs costs its few dozen composed nodes, not its 9⁹ expanded ones."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative post-order: a chain of aliases may be longer than Python's stack
        node, expanded = stack.pop()
        key = id(node)
        if expanded:
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            height[key] = 1 + max((height[id(c)] for c in children), default=0)
            on_path.discard(key)
            if size[key] > MAX_NODES:
                raise _Bounds(f"more than {MAX_NODES:,} YAML nodes once aliases are expanded (an alias bomb?)")
            if height[key] > MAX_DEPTH:
                raise _Bounds(f"nested too deeply once aliases are expanded (more than {MAX_DEPTH} levels)")
            continue
        if key in size:
            continue
        if key in on_path:  # popped again while still being expanded: an alias inside its own anchor
            raise _Bounds("an alias refers to a node that contains it (a recursive structure)")
        on_path.add(key)
        stack.append((node, True))
        stack += [(child, False) for child in _children(node) if id(child) not in size]


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML safely (no Python tags are ever constructed) and within bounds; errors name the source and line."""
    if len(text) > MAX_YAML_CHARS:
        raise ConfigError(f"{source}: {len(text):,} characters of YAML, more than the {MAX_YAML_CHARS:,} allowed")
    try:
        loader = _SafeLoader(text)  # a yaml.SafeLoader: never constructs Python objects from tags
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            check_expanded_size(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        multiline = "\n" in text.strip()  # a line number helps in a file, not in a one-line --set value
        where = f"{source}:{mark.line + 1}" if mark is not None and multiline else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except _Bounds as err:
        raise ConfigError(f"{source}: invalid YAML: {err}") from None
    except RecursionError:  # a last guard: the depth bound keeps PyYAML's recursive composer far from the limit
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """libyaml's emitter when PyYAML has it (the same text, 4x faster); every mapping in block style, one key a
    line, so that a config reads (and wraps on a narrow terminal) key by key; a list of scalars stays on one line."""


def _block_mapping(dumper: yaml.SafeDumper, data: dict[Any, Any]) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=False)


_Dumper.add_representer(dict, _block_mapping)


def dump_yaml(data: Any) -> str:
    """Plain types as YAML (a sweep writes one resolved config per run)."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=None, width=100)
