"""The `decnet-ttp` command line."""
