"""Validation of ATT&CK Navigator layers against the layer format 4.5 schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA = json.loads((Path(__file__).parent / "navigator_layer_4_5.schema.json").read_text())
Draft202012Validator.check_schema(SCHEMA)
VALIDATOR = Draft202012Validator(SCHEMA)


def layer_errors(layer: Any) -> list[str]:
    """Every way `layer` breaks the 4.5 format, including the rules a schema cannot say."""
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in VALIDATOR.iter_errors(layer)]
    if errors or not isinstance(layer, dict):
        return errors
    navigator = layer.get("versions", {}).get("navigator")
    if navigator is not None and tuple(map(int, navigator.split("."))) < (4, 9, 0):
        errors.append(f"versions/navigator: {navigator} is older than 4.9.0")
    gradient = layer.get("gradient")
    if gradient is not None and not gradient["maxValue"] > gradient["minValue"]:
        errors.append("gradient: maxValue must be greater than minValue")
    return errors
