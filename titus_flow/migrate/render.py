"""A translated job mapping as a job file: YAML, or Python in the style of examples/.

Values from the input only ever appear as ``repr()`` literals (Python) or
through ``yaml.safe_dump`` (YAML): no input text is interpolated into code, a
template or a format string. Keyword and class names come from titus-flow's own
models, never from the input.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

_INDENT = "    "


def render_yaml(document: dict[str, Any], header: list[str]) -> str:
    """``document`` as a YAML job file, ``header`` lines as comments on top."""
    comments = "".join(f"# {line}\n" for line in _one_line_each(header))
    return comments + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def render_python(job: BaseModel, document: dict[str, Any], header: list[str]) -> str:
    """``job`` as a Python job file: constructor calls for models, ``repr()`` for values.

    ``document`` is the mapping ``job`` was validated from: its values (e.g. the
    duration ``"10m"``) are what is written, so the file reads like a hand-written
    one; ``job`` supplies which model class each nested mapping became.
    """
    imports: dict[str, set[str]] = {}
    body = _render(job, document, imports, 0)
    lines = ['"""', *_one_line_each(header), '"""', ""]
    for module in sorted(imports):
        lines.append(f"from {module} import {', '.join(sorted(imports[module]))}")
    lines += ["", f"job = {body}", ""]
    return "\n".join(lines)


def _one_line_each(lines: list[str]) -> list[str]:
    # A header line may quote input (a file name): keep it on its line, never closing
    # the docstring or starting code.
    return [" ".join(line.replace('"""', "'''").split()) for line in lines]


def _render(model_value: Any, raw: Any, imports: dict[str, set[str]], depth: int) -> str:
    if isinstance(model_value, BaseModel) and isinstance(raw, dict):
        return _render_model(model_value, raw, imports, depth)
    if isinstance(model_value, list) and isinstance(raw, list) and len(raw) == len(model_value):
        if not any(isinstance(item, BaseModel) for item in model_value):
            return repr(raw)
        inner = _INDENT * (depth + 1)
        items = [_render(m, r, imports, depth + 1) for m, r in zip(model_value, raw, strict=True)]
        return "[\n" + "".join(f"{inner}{item},\n" for item in items) + _INDENT * depth + "]"
    return repr(raw)


def _render_model(
    model: BaseModel, raw: dict[str, Any], imports: dict[str, set[str]], depth: int
) -> str:
    cls = type(model)
    imports.setdefault(cls.__module__, set()).add(cls.__name__)
    inner = _INDENT * (depth + 1)
    arguments = []
    for name in cls.model_fields:  # keyword names from the model, not from the input
        if name not in raw or name == "kind":  # the class says the kind
            continue
        value = _render(getattr(model, name), raw[name], imports, depth + 1)
        arguments.append(f"{inner}{name}={value},\n")
    if not arguments:
        return f"{cls.__name__}()"
    return f"{cls.__name__}(\n" + "".join(arguments) + _INDENT * depth + ")"
