"""The one place bastion's version is defined."""

__version__ = "0.1.0"
