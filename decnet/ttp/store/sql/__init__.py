"""SQL side of the database store: models, the repository, migrations."""
