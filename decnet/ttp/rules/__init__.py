"""The rule format: safe YAML, the schema, compilation and directory loading."""
