"""SQL migrations of a pupitre profile database (package data for ``Migration.from_file``)."""
