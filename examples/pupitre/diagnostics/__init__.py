"""Schema and health reads of any pupitre database (global or profile)."""
