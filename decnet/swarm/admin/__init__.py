"""The master's admin API (`/api/v1/`): rules, state, history and coverage, with roles."""
