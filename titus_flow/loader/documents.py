"""YAML and JSON documents whose mappings know the line they start on.

Job files are read with duplicate keys refused (not silently overwritten) and
every mapping a :class:`LocatedMapping`, so a message can name the line of the
job it is about. Every problem is a :class:`~titus_flow.errors.SpecError` naming
the file, line and column where known.
"""

from __future__ import annotations

import bisect
import json
import json.decoder
import json.scanner
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any

import yaml

from titus_flow.errors import SpecError


class LocatedMapping(dict[Any, Any]):
    """A parsed mapping that remembers the line it started on."""

    __slots__ = ("line",)

    def __init__(self, line: int) -> None:
        super().__init__()
        self.line = line


def location(raw: Any, source: str, index: int | None = None, key: str = "jobs") -> str:
    """Where ``raw`` is, for messages: ``source:line``, else its place in the ``key`` list."""
    if isinstance(raw, LocatedMapping):
        return f"{source}:{raw.line}"
    return source if index is None else f"{source}: {key}[{index}]"


def read_documents(path: Path, json_syntax: bool) -> list[Any]:
    """The parsed documents of a YAML or JSON file (JSON: exactly one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise SpecError(f"{path}: cannot read: {err.strerror or err}") from err
    return [_parse_json(text, path)] if json_syntax else _parse_yaml(text, path)


# -- YAML ---------------------------------------------------------------------------------


def _parse_yaml(text: str, path: Path) -> list[Any]:
    try:
        return list(yaml.load_all(text, Loader=_YamlLoader))
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        at = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        context = f" ({err.context})" if err.context else ""
        raise SpecError(f"{at}: invalid YAML: {err.problem}{context}") from err
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: invalid YAML: {err}") from err


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with mapping lines recorded and duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *base" then overriding a merged key is allowed
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in lines:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {lines[key]}); keep one",
                    key_node.start_mark,
                )
            if isinstance(key, Hashable):
                lines[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _construct_located_map(loader: _YamlLoader, node: yaml.MappingNode) -> Iterable[LocatedMapping]:
    data = LocatedMapping(node.start_mark.line + 1)
    yield data  # first, so that recursive anchors can refer to it (as PyYAML does)
    data.update(loader.construct_mapping(node))


_YamlLoader.add_constructor("tag:yaml.org,2002:map", _construct_located_map)


# -- JSON ---------------------------------------------------------------------------------


class _DuplicateKeyError(Exception):
    def __init__(self, key: Any, line: int) -> None:
        self.key = key
        self.line = line


def _parse_json(text: str, path: Path) -> Any:
    try:
        return _LineDecoder(text).decode(text)
    except json.JSONDecodeError as err:
        raise SpecError(f"{path}:{err.lineno}:{err.colno}: invalid JSON: {err.msg}") from err
    except _DuplicateKeyError as err:
        raise SpecError(
            f"{path}:{err.line}: duplicate key {err.key!r} in this object; keep one"
        ) from err


class _LineDecoder(json.JSONDecoder):
    """A JSON decoder whose objects are :class:`LocatedMapping` with their line.

    The C scanner does not say where an object starts, so this uses the pure
    Python scanner with a ``parse_object`` that knows the offset: slower, and
    job files are small.
    """

    def __init__(self, text: str) -> None:
        super().__init__()
        newlines = [i for i, char in enumerate(text) if char == "\n"]

        def parse_object(s_and_end: tuple[str, int], *args: Any) -> tuple[Any, int]:
            line = bisect.bisect_left(newlines, s_and_end[1]) + 1

            def build(pairs: list[tuple[str, Any]]) -> LocatedMapping:
                mapping = LocatedMapping(line)
                for key, value in pairs:
                    if key in mapping:
                        raise _DuplicateKeyError(key, line)
                    mapping[key] = value
                return mapping

            strict, scan_once, object_hook, _, *memo = args
            result: tuple[Any, int] = json.decoder.JSONObject(  # type: ignore[attr-defined]
                s_and_end, strict, scan_once, object_hook, build, *memo
            )
            return result

        self.parse_object = parse_object
        # Neither py_make_scanner nor JSONObject is in typeshed; both are stable stdlib.
        self.scan_once = json.scanner.py_make_scanner(self)  # type: ignore[attr-defined]
