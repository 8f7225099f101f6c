"""TTP detection rules: format, compilation, stores and evaluation."""
