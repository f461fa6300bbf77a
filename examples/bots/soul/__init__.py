"""Soul versions: a bot's personality document, saved as an append-only version history."""
