"""Safe, bounded YAML for rule files: no duplicate keys, no alias bombs, positions kept."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from decnet.ttp.constants import MAX_RULE_FILE_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES

_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{name}"
                         for name in ("int", "float", "bool", "null", "timestamp"))
_MERGE_TAG = "tag:yaml.org,2002:merge"

_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _RuleLoader(_SafeLoader):  # type: ignore[misc, valid-type]
    """The safe loader with the resolver trimmed to what rule files use.

    The parser calls back into these three methods for every node; PyYAML's
    versions also serve path resolvers, which the safe loader never has.
    """

    _implicit = _SafeLoader.yaml_implicit_resolvers

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        return None

    def ascend_resolver(self) -> None:
        return None

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode:
            if implicit[0]:
                for tag, regexp in self._implicit.get(value[:1], ()):
                    if regexp.match(value):
                        return tag  # type: ignore[no-any-return]
            return _STR_TAG
        return _SEQ_TAG if kind is yaml.SequenceNode else _MAP_TAG


class YamlProblem(Exception):
    """A YAML document that cannot become a rule; `line`/`column` are 1-based."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.column = column



class _Builder:
    """Builds Python values from a composed node tree in one bounded pass.

    Faster than PyYAML's generic constructor, and strict: duplicate keys, merge
    keys, non-scalar keys, unknown tags, too many nodes (alias bombs) and deep
    nesting are all errors with a position.
    """

    __slots__ = ("budget", "loader")

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.budget = MAX_YAML_NODES

    def build(self, node: yaml.Node, depth: int = 1) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise YamlProblem(f"document expands to more than {MAX_YAML_NODES} nodes "
                              "(alias bomb?)", *_pos(node))
        if depth > MAX_YAML_DEPTH:
            raise YamlProblem(f"document nested deeper than {MAX_YAML_DEPTH}", *_pos(node))
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ_TAG:
                raise YamlProblem(f"unsupported YAML tag {node.tag}", *_pos(node))
            return [self.build(child, depth + 1) for child in node.value]
        if isinstance(node, yaml.MappingNode):
            if node.tag != _MAP_TAG:
                raise YamlProblem(f"unsupported YAML tag {node.tag}", *_pos(node))
            return self.mapping(node, depth)
        raise YamlProblem("unsupported YAML node", *_pos(node))

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag == _STR_TAG:
            return node.value
        construct = self.loader.yaml_constructors.get(node.tag)
        if construct is None or node.tag not in _SCALAR_TAGS:
            raise YamlProblem(f"unsupported YAML tag {node.tag}", *_pos(node))
        return construct(self.loader, node)

    def mapping(self, node: yaml.MappingNode, depth: int) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first_line: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise YamlProblem("mapping key is not a scalar", *_pos(key_node))
            if key_node.tag == _MERGE_TAG:
                raise YamlProblem("merge keys (<<) are not supported in rule files",
                                  *_pos(key_node))
            key = self.scalar(key_node)
            if isinstance(key, str):
                key = sys.intern(key)  # the same few keys repeat in every rule
            try:
                seen = key in first_line
            except TypeError:
                raise YamlProblem("mapping key is not hashable", *_pos(key_node)) from None
            if seen:
                raise YamlProblem(
                    f"duplicate key {key!r} (first defined on line {first_line[key]})",
                    *_pos(key_node),
                )
            first_line[key] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, depth + 1)
        return result


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A parsed rule document and the node tree it came from (for error positions)."""

    data: dict[str, Any]
    root: yaml.Node

    def position(self, path: Sequence[str | int]) -> tuple[int | None, int | None]:
        """Line and column of the deepest node on `path` that exists."""
        node = self.root
        for step in path:
            child = _child(node, step)
            if child is None:
                break
            node = child
        return _pos(node)


def _child(node: yaml.Node, step: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(step):
                return value_node  # type: ignore[no-any-return]
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
        return node.value[step]  # type: ignore[no-any-return]
    return None


def parse_rule_yaml(raw: bytes | str) -> YamlDocument:
    """Parse one rule document; raises `YamlProblem` with a position where known."""
    if isinstance(raw, bytes):
        if len(raw) > MAX_RULE_FILE_BYTES:
            raise YamlProblem(f"file is {len(raw)} bytes; rule files are limited to "
                              f"{MAX_RULE_FILE_BYTES}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise YamlProblem(f"not UTF-8: invalid byte at offset {exc.start}") from None
    else:
        text = raw
        if len(text) > MAX_RULE_FILE_BYTES:
            raise YamlProblem(f"document is {len(text)} characters; rule files are limited "
                              f"to {MAX_RULE_FILE_BYTES}")
    if text.startswith("\ufeff"):
        text = text[1:]
    loader = _RuleLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise YamlProblem("empty document: a rule file holds one YAML mapping")
        if not isinstance(root, yaml.MappingNode):
            raise YamlProblem("document is not a mapping: a rule file holds one YAML mapping",
                              *_pos(root))
        data = _Builder(loader).build(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        if mark is None:
            raise YamlProblem(f"invalid YAML: {reason}") from None
        raise YamlProblem(f"invalid YAML: {reason}", mark.line + 1, mark.column + 1) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlProblem("document nested too deeply") from None
    finally:
        loader.dispose()
    return YamlDocument(data=data, root=root)
