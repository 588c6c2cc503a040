"""Reading YAML as the Gateway's serde_yaml 0.9 does: YAML 1.2 core schema, node by node, with line numbers.

PyYAML resolves YAML 1.1 (``yes``/``on`` are booleans, ``010`` is octal); serde_yaml 0.9 follows 1.2, where
those are a string and ten. We compose nodes with 1.2 core resolvers and read scalars ourselves, so a string
field keeps its exact text and a plain number where a string is expected can be reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

STR_TAG = "tag:yaml.org,2002:str"
NULL_TAG = "tag:yaml.org,2002:null"
BOOL_TAG = "tag:yaml.org,2002:bool"
INT_TAG = "tag:yaml.org,2002:int"
FLOAT_TAG = "tag:yaml.org,2002:float"


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's implicit resolvers instead of 1.1's."""


Yaml12Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in [
    (NULL_TAG, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (BOOL_TAG, r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    (INT_TAG, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (FLOAT_TAG, r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+.0123456789")),
]:
    Yaml12Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


class YamlSyntaxError(ValueError):
    def __init__(self, message: str, line: int | None) -> None:
        self.line = line
        super().__init__(message)


def compose(text: str) -> Node | None:
    try:
        return yaml.compose(text, Loader=Yaml12Loader)  # noqa: S506  (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise YamlSyntaxError(f"not valid YAML: {exc}", line) from None


def line_of(node: Node) -> int:
    return node.start_mark.line + 1


def kind_of(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return {
        NULL_TAG: "null", BOOL_TAG: "a boolean", INT_TAG: "a number", FLOAT_TAG: "a number",
    }.get(node.tag, "a string")


def is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == NULL_TAG


def to_int(node: ScalarNode) -> int | None:
    if node.tag != INT_TAG:
        return None
    text = node.value
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def to_float(node: ScalarNode) -> float | None:
    if node.tag == INT_TAG:
        value = to_int(node)
        return float(value) if value is not None else None
    if node.tag != FLOAT_TAG:
        return None
    low = node.value.lower().lstrip("+")
    if low in (".inf", "-.inf"):
        return float(low.replace(".", ""))
    if low == ".nan":
        return float("nan")
    return float(node.value)


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    key_node: Node
    value: Node


def mapping_entries(node: MappingNode) -> tuple[list[Entry], list[Entry]]:
    """(entries, duplicates): serde rejects a struct key given twice; PyYAML would silently keep the last."""
    seen: dict[str, Entry] = {}
    duplicates = []
    for key_node, value in node.value:
        key = key_node.value if isinstance(key_node, ScalarNode) else str(key_node)
        entry = Entry(key, key_node, value)
        if key in seen:
            duplicates.append(entry)
        seen[key] = entry
    return list(seen.values()), duplicates


_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


def quote(text: str) -> str:
    """A YAML double-quoted scalar that reads back as exactly ``text`` (libyaml and PyYAML alike)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029, 0xFEFF) or 0xD800 <= code <= 0xDFFF:
            out.append(f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
