"""SQL side of the database store: models, the repository, migrations."""

import logging as _logging

# Alembic narrates every plugin and migration context at INFO; callers report outcomes.
for _name in ("alembic.runtime.plugins", "alembic.runtime.migration"):
    _logging.getLogger(_name).setLevel(_logging.WARNING)
