"""Bots: the identity rows (``queries`` = SQL and builders, ``repo`` = typed access)."""
