"""The one YAML reader of raysweep: safe, bounded, strict about keys and scalars.

Every YAML raysweep reads (sweeps, search spaces, workloads, suites, pinned baselines, the
values of ``--set``) goes through :func:`parse_yaml`. On top of ``yaml.SafeLoader`` it

* refuses a mapping that repeats a key (PyYAML keeps the last one silently);
* bounds the document before it is built: the node count *after* alias expansion (a "billion
  laughs" alias bomb expands to gigabytes from a few hundred bytes) and the nesting depth;
* resolves scalars with YAML 1.2's core schema: only ``true``/``false`` are booleans (YAML 1.1
  also reads ``yes``, ``no``, ``on``, ``off``, ``y``, ``n`` as booleans, which then pass as 1 and
  0 wherever a number is expected), ``1e-5`` is a float (YAML 1.1 reads it as a string),
  ``010`` is 10 (not octal 8) and ``1:30`` is a string (not 90);
* reports an undecodable or oversized file as one line naming it.

Errors are :class:`~raysweep.errors.ConfigError` with one line naming the source and the line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from raysweep.errors import ConfigError

__all__ = ["parse_yaml", "read_yaml_file", "parse_scalar", "MAX_NODES", "MAX_DEPTH", "MAX_BYTES"]

#: Nodes a document may expand to (aliases counted every time they are used). The largest
#: bundled file has a few hundred; a suite with many entries stays far below.
MAX_NODES = 100_000
#: Nesting depth of mappings and sequences; real configs nest under ten levels.
MAX_DEPTH = 50
#: Size of a YAML file raysweep reads.
MAX_BYTES = 4 * 1024 * 1024

_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars and duplicate-key detection."""

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {}

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                first = seen[key]
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: duplicate key {key!r} (first at line "
                    f"{first.start_mark.line + 1}); YAML would silently keep only the last one, "
                    f"remove one of them")
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


# Start from the SafeLoader's resolvers (null, timestamps, merge keys...) without YAML 1.1's
# bool/int/float rules, then add the YAML 1.2 core ones.
for _first, _rules in yaml.SafeLoader.yaml_implicit_resolvers.items():
    _Loader.yaml_implicit_resolvers[_first] = [
        (tag, rx) for tag, rx in _rules
        if tag not in (
            "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
        )]
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _construct_int(loader: _Loader, node: ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)  # "010" is ten in YAML 1.2, not octal eight


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _check_size(root: Node, source: str) -> None:
    """Walk the composed graph as construction would (aliases expanded) with a budget."""
    budget = MAX_NODES
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError(
                f"{source}: the document expands to more than {MAX_NODES} nodes (YAML aliases "
                f"*name repeat what &name anchors); write the values out or use fewer aliases")
        if depth > MAX_DEPTH:
            raise ConfigError(f"{source}: line {node.start_mark.line + 1}: nested deeper than "
                              f"{MAX_DEPTH} levels; flatten the structure")
        if isinstance(node, SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, MappingNode):
            for k, v in node.value:
                stack.append((k, depth + 1))
                stack.append((v, depth + 1))


def parse_yaml(text: str, source: str) -> Any:
    """Parse one YAML document (see the module docstring); ``source`` names it in errors."""
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise ConfigError(f"{source}: nested too deeply to parse; flatten the structure"
                              ) from None
        if root is None:
            return None
        _check_size(root, source)
        try:
            return loader.construct_document(root)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{source}:{where} invalid YAML ({problem}); fix the syntax") from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path) -> Any:
    """Read and parse a YAML file: one :class:`ConfigError` line for anything wrong with it."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, expected a YAML file")
    if not p.is_file():
        raise ConfigError(f"{p}: file not found")
    try:
        size = p.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{p}: {size} bytes, more than the {MAX_BYTES} a YAML config may "
                              f"have; is this the right file?")
        raw = p.read_bytes()
    except PermissionError:
        raise ConfigError(f"{p}: not readable (permission denied); fix its permissions") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text "
                          f"(byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                          f"save it as UTF-8 YAML") from None
    if "\x00" in text:
        raise ConfigError(f"{p}: contains NUL bytes, not a YAML text file")
    return parse_yaml(text, str(p))


def parse_scalar(raw: str, source: str) -> Any:
    """The value of a ``--set key=value`` (YAML rules above); a string when it does not parse."""
    try:
        return parse_yaml(raw, source)
    except ConfigError as exc:
        if "duplicate key" in str(exc) or "expands to" in str(exc) or "nested" in str(exc):
            raise
        return raw
