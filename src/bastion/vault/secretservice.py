"""Batch reads from the freedesktop Secret Service (Linux): what ``keyring`` cannot do.

``keyring`` reads one item per call, and each call opens its own D-Bus connection, looks the
collection up, searches, opens a session (a Diffie-Hellman exchange) and fetches one secret:
~19 ms here, 385 ms for 20 keys. This module reads many items over **one** connection and
**one** session: a ``SearchItems`` per wanted username on the collection ``keyring`` writes to
(the same lookup ``keyring`` makes), then a single ``GetSecrets`` for all of them, decrypted
as ``secretstorage`` decrypts one (AES-128-CBC under the session's key). It can also list
every item of a service (``SearchItems`` on the service alone, then each item's
attributes), which adopting another application's items needs.

The pieces come from ``secretstorage`` (the library ``keyring``'s own backend is built on);
only the two calls it has no wrapper for (``SearchItems`` returning paths without building an
``Item`` per path, and the service's ``GetSecrets``) are made through its D-Bus helpers. The
searches (and the attribute reads of a listing) are pipelined on the connection: all sent,
then all answers read, so N of them cost about one round trip instead of N.
Every function here runs inside :meth:`bastion.vault.keychain.KeychainClient.call`, which
bounds it by the keychain deadline and translates its errors.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["list_service", "read_usernames", "usable"]


def usable(keyring: Any) -> bool:
    """Whether ``keyring`` is keyring's Secret Service backend (or a subclass of it)."""
    try:
        from keyring.backends.SecretService import Keyring
    except ImportError:  # pragma: no cover - keyring without its Secret Service module
        return False
    return isinstance(keyring, Keyring)


@contextlib.contextmanager
def _collection(keyring: Any) -> Iterator[tuple[Any, Any]]:
    """``(connection, collection address)`` of the collection ``keyring`` reads and writes.

    A locked collection is an error (``LockedException`` -> ``KeychainLocked``): a batch read
    never raises an unlock prompt, as ``keyring`` would."""
    import secretstorage
    from secretstorage.collection import COLLECTION_IFACE, DEFAULT_COLLECTION
    from secretstorage.exceptions import LockedException
    from secretstorage.util import DBusAddressWrapper

    conn: Any = secretstorage.dbus_init()
    try:
        path = getattr(keyring, "preferred_collection", None) or DEFAULT_COLLECTION
        collection = DBusAddressWrapper(path, COLLECTION_IFACE, conn)
        if collection.get_property("Locked"):
            raise LockedException("the collection is locked")
        yield conn, collection
    finally:
        conn.close()


def _pipelined(conn: Any, messages: list[Any]) -> list[Any]:
    """The reply bodies of ``messages``, sent back to back on ``conn`` and then collected
    (a D-Bus error reply raises ``DBusErrorResponse``, as a single call would)."""
    # jeepney ships no type information: reached as plain objects.
    header_fields: Any = importlib.import_module("jeepney.low_level").HeaderFields
    unwrap_msg: Any = importlib.import_module("jeepney.wrappers").unwrap_msg

    serials = []
    for message in messages:
        serial = next(conn.outgoing_serial)
        conn.send(message, serial=serial)
        serials.append(serial)
    replies: dict[int, Any] = {}
    waiting = set(serials)
    while waiting:
        reply = conn.receive()
        serial = reply.header.fields.get(header_fields.reply_serial, -1)
        if serial in waiting:
            waiting.discard(serial)
            replies[serial] = reply
    return [unwrap_msg(replies[serial]) for serial in serials]


def _secrets(conn: Any, paths: list[str]) -> dict[str, str]:
    """Item path -> secret text for ``paths``, in one ``GetSecrets`` call and one session."""
    if not paths:
        return {}
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from secretstorage.defines import SS_PATH
    from secretstorage.util import SERVICE_IFACE, DBusAddressWrapper, open_session

    session = open_session(conn)
    service = DBusAddressWrapper(SS_PATH, SERVICE_IFACE, conn)
    (found,) = service.call("GetSecrets", "aoo", paths, session.object_path)
    values: dict[str, str] = {}
    for path, secret in found.items():
        data = bytes(secret[2])
        if session.encrypted:
            if session.aes_key is None:  # pragma: no cover - set by open_session
                raise RuntimeError("the Secret Service session has no key")
            # As secretstorage's Item.get_secret: AES-CBC under the session key, PKCS#7.
            decryptor = Cipher(
                algorithms.AES(session.aes_key), modes.CBC(bytes(secret[1]))
            ).decryptor()
            padded = decryptor.update(data) + decryptor.finalize()
            data = padded[: -padded[-1]]
        values[str(path)] = data.decode("utf-8")
    return values


def read_usernames(keyring: Any, service: str, usernames: Iterable[str]) -> dict[str, str]:
    """``username -> value`` for each of ``usernames`` under ``service`` that has an item
    (the first match, as ``keyring.get_password`` takes); absent ones are left out."""
    new_method_call: Any = importlib.import_module("jeepney").new_method_call
    wanted = list(dict.fromkeys(usernames))
    with _collection(keyring) as (conn, collection):
        searches = [
            new_method_call(
                collection, "SearchItems", "a{ss}", ({"service": service, "username": user},)
            )
            for user in wanted
        ]
        by_path: dict[str, str] = {}
        for user, (found,) in zip(wanted, _pipelined(conn, searches), strict=True):
            if found:
                by_path.setdefault(str(found[0]), user)
        return {by_path[path]: value for path, value in _secrets(conn, list(by_path)).items()}


def list_service(keyring: Any, service: str) -> dict[str, str]:
    """``username -> value`` of every item stored under ``service`` (by any application
    that used keyring's layout: attributes ``service`` and ``username``)."""
    from secretstorage.item import ITEM_IFACE
    from secretstorage.util import DBusAddressWrapper

    properties: Any = importlib.import_module("jeepney").Properties
    with _collection(keyring) as (conn, collection):
        (found,) = collection.call("SearchItems", "a{ss}", {"service": service})
        paths = [str(path) for path in found]
        reads = [
            properties(DBusAddressWrapper(path, ITEM_IFACE, conn)).get("Attributes")
            for path in paths
        ]
        by_path: dict[str, str] = {}
        seen: set[str] = set()
        for path, ((_signature, attributes),) in zip(paths, _pipelined(conn, reads), strict=True):
            username = dict(attributes).get("username")
            if username is not None and username not in seen:
                seen.add(username)
                by_path[str(path)] = username
        return {by_path[path]: value for path, value in _secrets(conn, list(by_path)).items()}
