"""Peer-review packs: a review of a talk imported from a folder (manifest + audio files)."""
