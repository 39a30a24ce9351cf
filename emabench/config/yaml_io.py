"""Safe YAML: the loader every config, ``--set`` value and run folder's config.yaml goes through, and the dumper.

YAML 1.2 floats (``1e-5`` is a float), duplicate keys refused, no Python tags ever constructed; errors are one
:class:`~emabench.errors.ConfigError` line naming the source and line.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from emabench.errors import ConfigError


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-5`` as a float (YAML 1.2), where PyYAML 1.1 reads a string."""


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


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML safely (no Python tags are ever constructed); errors name the source and line."""
    try:
        loader = _SafeLoader(text)  # a yaml.SafeLoader: never constructs Python objects from tags
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None
    except RecursionError:  # PyYAML parses nested brackets recursively: ~900 levels exhaust the stack
        raise ConfigError(f"{source}: invalid YAML: nested too deeply") from None


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)
