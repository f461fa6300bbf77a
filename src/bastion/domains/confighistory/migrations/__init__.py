"""SQL migrations of the ``config_history`` namespace (see :mod:`bastion.domains.confighistory`)."""
