"""``HotQuery``: a query a domain declares hot, checked by :mod:`bastion.store.plan`.

Its own module because every domain's ``queries.py`` declares its hot queries at import, and
the one-shot read path (``bastion settings get``) imports a ``queries.py`` without needing the
plan machinery. :mod:`bastion.store.plan` re-exports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["HotQuery"]


@dataclasses.dataclass(frozen=True, slots=True)
class HotQuery:
    """A query a domain declares hot, with sample parameters and the index it must use."""

    name: str
    sql: str
    params: Sequence[Any] | Mapping[str, Any]
    index: str
