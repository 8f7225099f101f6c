"""The operator console: server-rendered pages under `/ui/` on the master's admin port."""
