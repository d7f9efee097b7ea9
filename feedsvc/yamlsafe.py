"""Safe YAML loading with limits.

PyYAML's loaders expand aliases without limit (a "billion laughs" document
takes minutes and gigabytes) and the C loader cannot be hooked, so aliases are
counted on the event stream before any object is built. Documents without a
`*` cannot contain an alias and skip that pass.
"""

from __future__ import annotations

from typing import Any

import yaml

try:
    from yaml import CSafeLoader as SafeLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader  # type: ignore[assignment]

from feedsvc.errors import YamlError

MAX_ALIASES = 50
MAX_BYTES = 64 * 1024
MAX_CONFIG_BYTES = 1024 * 1024   # a config with hundreds of categories is still fine


def _count_aliases(text: str) -> int:
    return sum(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text, Loader=SafeLoader))


def load(text: str, *, max_bytes: int = MAX_BYTES, max_aliases: int = MAX_ALIASES) -> Any:
    """Parse one YAML document safely; raise YamlError on bad YAML or broken limits."""
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise YamlError(f"YAML is larger than {max_bytes // 1024} KiB")
    try:
        if "*" in text and _count_aliases(text) > max_aliases:
            raise YamlError(f"YAML uses more than {max_aliases} aliases")
        return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - SafeLoader
    except yaml.MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise YamlError(f"invalid YAML: {e.problem or e}", line) from e
    except yaml.YAMLError as e:
        raise YamlError(f"invalid YAML: {e}") from e
    except RecursionError as e:
        raise YamlError("YAML is nested too deeply") from e
    except (ValueError, TypeError, AttributeError, OverflowError) as e:
        # PyYAML's constructors raise these for values its resolver accepted:
        # `2022-02-30`, `!!timestamp x`, `!!int 0x` (a hostile post or config).
        raise YamlError(f"invalid value: {e}") from e


def load_with_lines(text: str) -> tuple[Any, dict[tuple[str, ...], int]]:
    """Load YAML and also return the 1-based line of each mapping key path.

    Used for config.yaml so that errors can name a line; the compose pass is
    cheap for a config-sized document.
    """
    data = load(text, max_bytes=MAX_CONFIG_BYTES)
    lines: dict[tuple[str, ...], int] = {}
    try:
        node = yaml.compose(text, Loader=SafeLoader)
    except yaml.YAMLError:  # pragma: no cover - load() above already succeeded
        return data, lines
    _walk(node, (), lines)
    return data, lines


def _walk(node: Any, path: tuple[str, ...], lines: dict[tuple[str, ...], int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, str(key.value))
            lines[sub] = key.start_mark.line + 1
            _walk(value, sub, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*path, str(i))
            lines[sub] = item.start_mark.line + 1
            _walk(item, sub, lines)
