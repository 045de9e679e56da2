"""Read a fleet file (YAML or JSON) into a validated :class:`FleetSpec`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydantic
import yaml

from titus_flow.errors import SpecError, format_validation_error
from titus_flow.fleet.spec import FleetSpec


def parse_fleet(raw: Any, source: str) -> FleetSpec:
    """Validate a fleet mapping; errors name ``source`` and the field."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a fleet file holds one mapping of fleet fields")
    try:
        return FleetSpec.model_validate(raw)
    except pydantic.ValidationError as err:
        raise SpecError(format_validation_error(err, source)) from err


def load_fleet(path: Path) -> FleetSpec:
    """Load the fleet in ``path`` (``.yaml``, ``.yml`` or ``.json``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: cannot read: {err}") from err
    try:
        raw = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: invalid YAML: {err}".replace("\n", " ")) from err
    return parse_fleet(raw, str(path))
