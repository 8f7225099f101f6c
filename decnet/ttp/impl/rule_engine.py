"""Public home of the rule format and the engine: `RuleSchema`, `CompiledRule`, `RuleEngine`."""

from decnet.ttp.engine.engine import RuleEngine
from decnet.ttp.engine.events import Event, EventError, Tag, tag_uuid
from decnet.ttp.rules.compiled import CompiledRule, Emit, ReviewInfo
from decnet.ttp.rules.compiler import compile_rule
from decnet.ttp.rules.loader import LoadResult, load_directory
from decnet.ttp.rules.schema import EmitSchema, RuleSchema

__all__ = [
    "CompiledRule",
    "Emit",
    "EmitSchema",
    "Event",
    "EventError",
    "LoadResult",
    "ReviewInfo",
    "RuleEngine",
    "RuleSchema",
    "Tag",
    "compile_rule",
    "load_directory",
    "tag_uuid",
]
