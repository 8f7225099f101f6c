"""Swarm mode: a master projecting a rules directory into the database, and workers
that tail it, keep a `RuleEngine` in step and serve it over HTTP."""
