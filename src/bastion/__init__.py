"""bastion: hardened local backend (vault, store, supervisor, API)."""

from bastion.__about__ import __version__

__all__ = ["__version__"]
