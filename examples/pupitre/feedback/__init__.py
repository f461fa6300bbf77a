"""Automatic feedback on runs and quest attempts, and the notes attached to it."""
