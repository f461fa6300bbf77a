"""SQL migrations of pupitre's global database (package data for ``Namespace.from_package``)."""
