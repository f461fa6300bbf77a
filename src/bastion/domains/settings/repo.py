"""Typed access to ``settings``: key -> JSON value, with ``updated_at``.

Every write also records a ``setting.changed`` event in the same write unit (the event names
the key and what happened, not the value).
"""

from __future__ import annotations

from typing import Any, TypeVar, cast, overload

from bastion._credentials import refuse_setting
from bastion.domains.events.repo import emit_tx
from bastion.domains.settings import queries as q
from bastion.domains.settings.model import (
    Setting,
    check_key,
    decode_value,
    encode_value,
    not_set,
    setting_from_row,
)
from bastion.errors import SettingUnreadable
from bastion.store.engine import WriteTx
from bastion.store.repo import Repo

__all__ = ["Setting", "SettingsRepo"]

T = TypeVar("T")


def _typed(key: str, value: Any, type_: type[T]) -> T:
    # bool is an int in Python but never what a caller asking for int (or float) means.
    if type_ is float and isinstance(value, int) and not isinstance(value, bool):
        return value  # type: ignore[return-value]
    ok = not (isinstance(value, bool) and type_ is not bool) and isinstance(value, type_)
    if not ok:
        raise ValueError(
            f"setting {key!r} holds {type(value).__name__} {value!r}, not {type_.__name__}; "
            f"set it with `bastion settings set {key} <json>`"
        )
    return cast(T, value)


class SettingsRepo(Repo):
    """``settings`` on one database."""

    __slots__ = ()

    @overload
    def get(self, key: str, default: Any = None, type_: None = None) -> Any: ...
    @overload
    def get(self, key: str, default: T | None = None, *, type_: type[T]) -> T: ...
    @overload
    def get(self, key: str, default: T | None, type_: type[T]) -> T: ...

    def get(self, key: str, default: Any = None, type_: type[Any] | None = None) -> Any:
        """The value of ``key``, or ``default`` if unset. With ``type_``, a stored value of
        another type is a ``ValueError`` naming the key (the default is returned as given).
        A stored value that breaks the value rules is ``SettingUnreadable``."""
        check_key(key)
        row = self.db.lookup(q.GET, (key,))
        if row is None:
            return default
        value = decode_value(key, row[0])
        return value if type_ is None else _typed(key, value, type_)

    def get_setting(self, key: str) -> Setting:
        """``key``'s ``Setting`` (value and time); ``NotFound`` when unset."""
        check_key(key)
        return setting_from_row(key, self.db.lookup(q.GET, (key,)))

    def set(
        self, key: str, value: Any, *, ts: float | None = None, allow_plaintext: bool = False
    ) -> Setting:
        """Store ``value`` (any JSON value but null, within the limits of
        :func:`~bastion.domains.settings.model.encode_value`, which refuses anything else
        with ``InvalidValue`` before a write starts) under ``key``; records
        ``setting.changed``.

        A value that looks like a credential is refused (:class:`PlaintextCredential`, see
        ``bastion._credentials``) unless ``allow_plaintext``."""
        check_key(key)
        # The value rules first: the credential scan walks the value, which must be bounded.
        text = encode_value(key, value)
        if not allow_plaintext:
            refuse_setting(key, value)
        return self.db.write(lambda tx: self.set_tx(tx, key, value, ts=ts, _text=text))

    @staticmethod
    def set_tx(
        tx: WriteTx,
        key: str,
        value: Any,
        *,
        ts: float | None = None,
        _text: str | None = None,
        allow_plaintext: bool = False,
    ) -> Setting:
        """``set`` inside the caller's write unit (the same credential check)."""
        check_key(key)
        text = _text if _text is not None else encode_value(key, value)
        if not allow_plaintext and _text is None:
            refuse_setting(key, value)
        event = emit_tx(tx, "setting.changed", key, {"key": key, "action": "set"}, ts=ts)
        tx.execute(q.UPSERT, (key, text, event.ts))
        return Setting(key, value, event.ts)

    def delete(self, key: str) -> None:
        """Remove ``key``; ``NotFound`` if it was not set. Records ``setting.changed``."""
        check_key(key)

        def run(tx: WriteTx) -> None:
            if tx.execute(q.DELETE, (key,)) == 0:
                raise not_set(key)
            emit_tx(tx, "setting.changed", key, {"key": key, "action": "delete"})

        self.db.write(run)

    def list(self, prefix: str = "") -> list[Setting]:
        """Every setting whose key starts with ``prefix``, by key. A row whose stored value
        cannot be read back comes as a ``Setting`` with ``error`` set and ``value`` None,
        so one bad row never hides the others."""
        if prefix:
            rows = self.db.query(q.LIST, (prefix, prefix + "\U0010ffff"))
        else:
            rows = self.db.query(q.LIST_ALL)
        return [_listed(k, v, ts) for k, v, ts in rows]


def _listed(key: str, text: str, ts: float) -> Setting:
    try:
        return Setting(key, decode_value(key, text), ts)
    except SettingUnreadable as err:
        return Setting(key, None, ts, error=err.message)
