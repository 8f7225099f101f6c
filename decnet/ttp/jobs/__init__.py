"""Batch jobs over the engine."""
