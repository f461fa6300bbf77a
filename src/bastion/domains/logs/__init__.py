"""Built-in ``logs`` table (see :mod:`.repo`)."""

from bastion.domains.logs.repo import LEVELS, LogRecord, LogsRepo, normalize_level

__all__ = ["LEVELS", "LogRecord", "LogsRepo", "normalize_level"]
