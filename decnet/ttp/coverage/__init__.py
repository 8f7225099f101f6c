"""ATT&CK coverage of a rule set: by tactic, and as ATT&CK Navigator layers."""

from decnet.ttp.coverage.navigator import layer_from_counts, layer_from_rules, write_layer
from decnet.ttp.coverage.tactics import Covered, TacticCoverage, coverage_by_tactic, covered

__all__ = ["Covered", "TacticCoverage", "coverage_by_tactic", "covered", "layer_from_counts",
           "layer_from_rules", "write_layer"]
