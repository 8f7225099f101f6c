"""Implementation modules kept at their public paths."""
