"""ATT&CK Navigator layers (layer format 4.5) of what rules cover and what was observed.

A layer names the ATT&CK version the tags are expressed against (`ATTACK_RELEASE`), so
the Navigator loads the matching matrix. Sub-techniques the layer annotates are shown
expanded, and a technique shows the best score of its sub-techniques.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from decnet.ttp.constants import (
    ATTACK_RELEASE,
    ATTACK_VERSION,
    ENTERPRISE_TACTICS,
    NAVIGATOR_LAYER_VERSION,
    NAVIGATOR_VERSION,
)
from decnet.ttp.coverage.tactics import covered
from decnet.ttp.rules.compiled import CompiledRule

#: The Navigator's domain id for enterprise ATT&CK.
DOMAIN = "enterprise-attack"
#: Score gradient: white (low) to blue (high).
_GRADIENT_COLORS = ["#ffffff", "#3182bd"]


def layer_from_rules(rules: Iterable[CompiledRule], *, name: str = "decnet-ttp rule coverage",
                     now: datetime | None = None) -> dict[str, Any]:
    """A layer with one entry per (technique or sub-technique, tactic) the rules emit.

    Score: the best confidence of the covering rules, 0 to 100. Comment: the covering rules,
    `R0015 make_executable (0.60)`, one per line; a cross-event (lifter) rule says so.
    Disabled rules cover nothing; a clipped rule counts at its ceiling.
    """
    rules = list(rules)
    techniques: list[dict[str, Any]] = []
    for entry in covered(rules, now):
        lines = [f"{rule_id} {rule_name} ({confidence:.2f})"
                 + (f" [lifter:{lifter}]" if lifter else "")
                 for rule_id, (rule_name, confidence, lifter) in sorted(entry.rules.items())]
        techniques.append({
            "techniqueID": entry.technique,
            "tactic": ENTERPRISE_TACTICS[entry.tactic],
            "score": round(entry.confidence * 100),
            "comment": "\n".join(lines),
            "enabled": True,
            "metadata": [{"name": "rule", "value": line} for line in lines],
        })
    description = (f"Techniques the {len(rules)} rule(s) emit; score = best rule "
                   "confidence x 100")
    return _layer(name, description, techniques, max_score=100)


def layer_from_counts(counts: Mapping[str, int], *,
                      name: str = "decnet-ttp observed techniques") -> dict[str, Any]:
    """A layer of observed techniques: `counts` maps a technique or sub-technique id to its
    tag count, which becomes the score. Entries carry no tactic: a count shows under every
    tactic of its technique (the counts do not say which one)."""
    techniques = [
        {"techniqueID": technique, "score": count, "comment": f"{count} tag(s)",
         "enabled": True}
        for technique, count in sorted(counts.items()) if count > 0
    ]
    top = max(counts.values(), default=0)
    return _layer(name, f"Techniques tagged in observed events; score = tag count "
                  f"({sum(counts.values())} tag(s))", techniques, max_score=max(top, 1))


def _layer(name: str, description: str, techniques: list[dict[str, Any]],
           max_score: int) -> dict[str, Any]:
    return {
        "name": name,
        "versions": {"attack": ATTACK_VERSION, "navigator": NAVIGATOR_VERSION,
                     "layer": NAVIGATOR_LAYER_VERSION},
        "domain": DOMAIN,
        "description": description,
        "sorting": 3,
        "layout": {"layout": "side", "showID": True, "showName": True,
                   "showAggregateScores": True, "countUnscored": False,
                   "aggregateFunction": "max", "expandedSubtechniques": "annotated"},
        "hideDisabled": False,
        "techniques": techniques,
        "gradient": {"colors": _GRADIENT_COLORS, "minValue": 0, "maxValue": max_score},
        "metadata": [{"name": "generator", "value": "decnet-ttp"},
                     {"name": "attack_release", "value": ATTACK_RELEASE}],
    }


def write_layer(path: Path, layer: dict[str, Any]) -> None:
    """Write `layer` as indented JSON (UTF-8), the way the Navigator's "upload" reads it."""
    path.write_bytes(orjson.dumps(layer, option=orjson.OPT_INDENT_2) + b"\n")
