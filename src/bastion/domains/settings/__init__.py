"""Built-in ``settings`` table (see :mod:`.repo`)."""

from bastion.domains.settings.repo import Setting, SettingsRepo

__all__ = ["Setting", "SettingsRepo"]
