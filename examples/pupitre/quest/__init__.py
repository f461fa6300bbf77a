"""Quests (speaking challenges) and the user's attempts at them (profile database)."""
