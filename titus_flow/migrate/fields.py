"""Which fields of a titus-flow job an export leaves behind.

An export names the fields it carries; every other field whose value differs
from its default is reported, so a new spec field that no exporter knows is
reported too rather than dropped silently.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from pydantic import BaseModel

from titus_flow.migrate.report import Dropped


def uncarried(
    model: BaseModel,
    carried: Collection[str],
    reasons: Mapping[str, str],
    target: str,
    prefix: str = "",
) -> list[Dropped]:
    """Fields of ``model`` set away from their default and not in ``carried``.

    ``carried`` and ``reasons`` hold dotted paths (``container.ports``); a
    carried path covers everything under it. A field without a reason is
    reported as having no ``target`` counterpart.
    """
    dropped: list[Dropped] = []
    for name, info in type(model).model_fields.items():
        path = f"{prefix}{name}"
        if path in carried or name == "kind":
            continue
        value = getattr(model, name)
        below = f"{path}."
        if isinstance(value, BaseModel) and any(c.startswith(below) for c in carried):
            dropped += uncarried(value, carried, reasons, target, below)
        elif value != info.get_default(call_default_factory=True, validated_data={}):
            reason = reasons.get(path, f"no {target} counterpart")
            dropped.append(Dropped(path, reason))
    return dropped
