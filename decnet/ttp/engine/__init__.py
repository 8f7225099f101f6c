"""Evaluation of events against the live rules."""
