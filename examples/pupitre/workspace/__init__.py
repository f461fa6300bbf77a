"""Workspace profiles: the rows of the global database (``queries`` = SQL, ``repo`` = typed)."""
