"""Built-in ``activity`` table: the audit / activity feed (see :mod:`.repo`)."""

from bastion.domains.activity.repo import Activity, ActivityRepo

__all__ = ["Activity", "ActivityRepo"]
