"""Talks: projects, their outline and their recorded runs (profile database)."""
