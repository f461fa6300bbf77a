"""The OS-keychain backend: ``keyring`` with a deadline on every call and named errors.

What this module adds to ``keyring`` (and why):

- **No global, no silent fallback.** The keyring backend is chosen here, explicitly, never via
  ``keyring.get_keyring()`` (a process-wide singleton that can fall back to a plaintext file).
  ``"auto"`` takes the highest-priority *OS keychain* among keyring's own backends; a backend of
  priority <= 0 (``fail``, ``null``) or a plaintext one (``keyrings.alt`` plaintext) is refused
  with ``KeychainUnavailable``, even when named in config.
- **Deadlines.** A locked Secret Service can wait forever on an unlock prompt (secretstorage
  #33). Every call runs on a short-lived daemon thread and is abandoned after
  ``vault.keychain_timeout_s`` with ``KeychainTimeout``.
- **Named errors.** No D-Bus session -> ``KeychainUnavailable`` (hint: start one, or use the
  encrypted file); no unlocked collection / ``KeyringLocked`` -> ``KeychainLocked``.
- **Chunking.** Values longer than the backend's limit (Windows: 2,560 bytes of UTF-16, so a
  limit in bytes, not characters: ``vault/_platform.py``) are split into items
  ``scope/name#1..N`` behind a header item, or refused with the limit named.
- **Enumeration and batches.** ``keyring`` cannot list items (keyring #759) nor read several
  at once; on Linux the Secret Service search API (``secretstorage``) can, which
  ``reconcile``, ``adopt`` and ``get_many`` use (:mod:`bastion.vault.secretservice`).

Item layout: service = ``vault.service`` (default ``bastion``), username = ``scope/name``.
bastion's own keys (the fingerprint key, a keychain-held vault KEK) live under usernames
starting ``__bastion__/``.
"""

from __future__ import annotations

import hashlib
import importlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from bastion._tally import Buckets
from bastion.config import VaultConfig
from bastion.errors import (
    DecryptionFailed,
    KeychainLocked,
    KeychainTimeout,
    KeychainUnavailable,
    SecretTooLarge,
    VaultError,
)
from bastion.store import WriteTx
from bastion.vault import _platform, secretservice
from bastion.vault._platform import ItemLimit
from bastion.vault.backend import RecordRef, item_key, split_item_key
from bastion.vault.crypto import decode_key, encode_key, new_key

__all__ = [
    "INTERNAL_PREFIX",
    "KeychainBackend",
    "KeychainClient",
    "choose_keyring",
]

T = TypeVar("T")

INTERNAL_PREFIX = "__bastion__/"
_FP_KEY_ITEM = INTERNAL_PREFIX + "fingerprint-key"
# A NUL never occurs in a stored value (rules refuse it), so this header is unambiguous.
_CHUNK_HEADER = "\x00bastion-chunks:v1:"
#: Modules of keyring's own OS-keychain backends; "auto" chooses among these only.
_OS_KEYCHAIN_MODULES = (
    "keyring.backends.SecretService",
    "keyring.backends.libsecret",
    "keyring.backends.kwallet",
    "keyring.backends.macOS",
    "keyring.backends.Windows",
)
#: Backends that store values in plaintext: refused even when named explicitly.
_PLAINTEXT = frozenset(
    {
        "keyrings.alt.file.PlaintextKeyring",
        # Not plaintext, but not a keychain either: they store nothing or always fail.
        "keyring.backends.null.Keyring",
        "keyring.backends.fail.Keyring",
    }
)


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _priority(backend_cls: Any) -> float:
    try:
        return float(backend_cls.priority)
    except Exception:  # keyring signals "not viable here" by raising from priority
        return float("-inf")


def choose_keyring(name: str = "auto") -> tuple[Any, str]:
    """Instantiate the keyring backend to use and say why; refuse unsafe ones.

    Returns ``(backend, reason)``. Raises ``KeychainUnavailable`` with a hint when nothing
    usable exists (no D-Bus session on Linux is the common case).
    """
    import keyring.backend
    from keyring.errors import KeyringError

    if name != "auto":
        module_name, _, cls_name = name.rpartition(".")
        if name in _PLAINTEXT or "plaintext" in cls_name.lower():
            raise KeychainUnavailable(
                f"keyring backend {name} stores secrets in plaintext (or not at all); refused",
                hint='Use an OS keychain, or set vault.backend = "encrypted-file".',
                backend=name,
            )
        try:
            cls = getattr(importlib.import_module(module_name), cls_name)
        except (ImportError, AttributeError, ValueError) as err:
            raise KeychainUnavailable(
                f"keyring backend {name} cannot be imported: {type(err).__name__}",
                hint='Set vault.keyring_backend = "auto" or install the package that has it.',
                backend=name,
            ) from err
        priority = _priority(cls)
        if priority <= 0:
            raise KeychainUnavailable(
                f"keyring backend {name} is not usable here (priority {priority})",
                backend=name,
            )
        try:
            return cls(), f"configured: vault.keyring_backend = {name} (priority {priority})"
        except KeyringError as err:
            raise _map_error(err, "opening the keychain") from err

    # Not keyring.backend.get_all_keyring(): it caches its answer for the life of the process,
    # so a process that once ran without D-Bus would never see a Secret Service again.
    for module_name in _OS_KEYCHAIN_MODULES:
        try:
            importlib.import_module(module_name)
        except ImportError:  # pragma: no cover - a platform module that cannot load here
            continue
    classes = [
        cls
        for cls in keyring.backend.KeyringBackend._classes
        if cls.__module__.startswith(_OS_KEYCHAIN_MODULES)
        and _qualname(cls) not in _PLAINTEXT
        and _priority(cls) > 0
    ]
    candidates = []
    for cls in classes:
        try:
            candidates.append(cls())
        except (TypeError, KeyringError):
            continue
    if not candidates:
        hint = _platform.UNAVAILABLE_HINT or KeychainUnavailable.default_hint
        raise KeychainUnavailable(
            "no OS keychain is available (keyring found only its fail backend)", hint=hint
        )
    best = max(candidates, key=lambda b: _priority(type(b)))
    return best, f"auto: highest-priority OS keychain {_qualname(best)} ({_priority(type(best))})"


def _map_error(err: BaseException, what: str) -> VaultError:
    """keyring/secretstorage/D-Bus errors -> bastion's named keychain errors."""
    from keyring.errors import InitError, KeyringLocked, NoKeyringError

    kind = type(err).__name__
    text = str(err)
    if isinstance(err, KeyringLocked) or "locked" in text.lower():
        return KeychainLocked(f"{what}: the keychain is locked ({kind})")
    if isinstance(err, InitError) and ("collection" in text.lower() or "prompt" in text.lower()):
        return KeychainLocked(
            f"{what}: the keychain has no unlocked collection ({kind}: {text})",
            hint="Unlock or create the default keyring (e.g. log in to the desktop session, or "
            "`echo -n PASS | gnome-keyring-daemon --unlock`), then retry.",
        )
    if isinstance(err, NoKeyringError):
        return KeychainUnavailable(f"{what}: no keychain backend ({kind})")
    # D-Bus errors (the session bus went away, the daemon crashed) and anything else.
    return KeychainUnavailable(f"{what}: the keychain failed ({kind}: {text})")


class KeychainClient:
    """Raw item access with deadlines; the encrypted backend uses it for a keychain-held KEK."""

    def __init__(self, cfg: VaultConfig, keyring_backend: Any | None = None) -> None:
        self.service = cfg.service
        self.timeout = cfg.keychain_timeout_s
        if keyring_backend is None:
            self.keyring, self.reason = choose_keyring(cfg.keyring_backend)
        else:
            self.keyring, self.reason = keyring_backend, f"given: {_qualname(keyring_backend)}"
        self.backend_name = _qualname(self.keyring)
        #: Each call's duration goes here when set (a VaultTally's, for GET /metrics).
        self.latency: Buckets | None = None

    def call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` with the deadline; translate its errors.

        The call runs on a daemon thread: a keychain stuck on an unlock prompt cannot be
        interrupted, so it is abandoned (and finishes or dies with the process) while the
        caller gets ``KeychainTimeout``.
        """
        box: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                box["result"] = fn(*args)
            except BaseException as err:  # handed to the caller's thread below
                box["error"] = err
            finally:
                done.set()

        thread = threading.Thread(target=run, name="bastion-keychain", daemon=True)
        started = time.monotonic()
        thread.start()
        answered = done.wait(self.timeout)
        if self.latency is not None:
            self.latency.observe(time.monotonic() - started)
        if not answered:
            raise KeychainTimeout(
                f"{what}: the keychain did not answer within {self.timeout:g} s",
                timeout_s=self.timeout,
            )
        if "error" in box:
            err = box["error"]
            if isinstance(err, VaultError):
                raise err
            raise _map_error(err, what) from err
        return box["result"]  # type: ignore[no-any-return]

    def get(self, username: str) -> str | None:
        """``username``'s item (within the deadline), or None."""
        value = self.call(f"reading {username}", self.keyring.get_password, self.service, username)
        return None if value is None else str(value)

    def set(self, username: str, value: str) -> None:
        """Write ``username``'s item (within the deadline)."""
        self.call(f"writing {username}", self.keyring.set_password, self.service, username, value)

    def delete(self, username: str) -> bool:
        """Delete ``username``'s item (within the deadline); True if it existed."""
        from keyring.errors import PasswordDeleteError

        def delete() -> bool:
            try:
                self.keyring.delete_password(self.service, username)
            except PasswordDeleteError:
                return False
            return True

        return self.call(f"deleting {username}", delete)

    def usernames(self) -> frozenset[str] | None:
        """Every username under our service, or ``None`` where the platform cannot list."""
        if not type(self.keyring).__module__.startswith("keyring.backends.SecretService"):
            return None

        def search() -> frozenset[str]:
            import secretstorage

            conn = secretstorage.dbus_init()
            try:
                found: set[str] = set()
                for collection in secretstorage.get_all_collections(conn):
                    for item in collection.search_items({"service": self.service}):
                        user = item.get_attributes().get("username")
                        if user is not None:
                            found.add(user)
                return frozenset(found)
            finally:
                conn.close()

        return self.call("listing keychain items", search)

    def read_many(self, usernames: Iterable[str]) -> dict[str, str] | None:
        """``username -> value`` for each of ``usernames`` that has an item, read in one
        batch (one connection, one session, one ``GetSecrets``); ``None`` where the keychain
        cannot read in batches (the caller then reads one by one)."""
        if not secretservice.usable(self.keyring):
            return None
        names = list(usernames)
        return self.call(
            f"reading {len(names)} keychain items",
            secretservice.read_usernames,
            self.keyring,
            self.service,
            names,
        )

    def list_service(self, service: str) -> dict[str, str] | None:
        """``username -> value`` of every item another application stored under ``service``
        (keyring's layout), or ``None`` where the keychain cannot enumerate."""
        if not secretservice.usable(self.keyring):
            return None
        return self.call(
            f"listing the keychain items of service {service!r}",
            secretservice.list_service,
            self.keyring,
            service,
        )

    def ensure_key(self, username: str) -> bytes:
        """A random 256-bit key kept in the keychain under ``username``, created if missing."""
        stored = self.get(username)
        if stored is None:
            key = new_key()
            self.set(username, encode_key(key))
            # Re-read: a concurrent process may have created it first; its key wins.
            stored = self.get(username) or encode_key(key)
        return decode_key(stored, what=f"keychain item {self.service}/{username}")


def _chunk_names(key: str, head: str) -> list[str]:
    """The item names of the chunks a header item announces."""
    count = int(head[len(_CHUNK_HEADER) :].partition(":")[0])
    return [f"{key}#{i}" for i in range(1, count + 1)]


def _joined(key: str, head: str, parts: Sequence[str | None]) -> str | None:
    """The value behind a chunk header: its ``parts`` joined and checked (None if one is gone)."""
    if any(p is None for p in parts):
        return None
    value = "".join(p for p in parts if p is not None)
    digest = head[len(_CHUNK_HEADER) :].partition(":")[2]
    if hashlib.sha256(value.encode()).hexdigest()[:16] != digest:
        raise DecryptionFailed(
            f"{key}: the keychain chunks do not match their header (a partial write?)",
            hint="Set the secret again.",
        )
    return value


class KeychainBackend:
    """Values in the OS keychain; the index in ``vault.db`` knows what exists."""

    kind = "keychain"

    def __init__(self, cfg: VaultConfig, keyring_backend: Any | None = None) -> None:
        self.client = KeychainClient(cfg, keyring_backend)
        self.chunking = cfg.chunking
        #: What one item holds: vault.keychain_max_chars, else the keychain's own limit
        #: (Windows: 2,560 bytes of UTF-16), else none.
        self.limit: ItemLimit | None = (
            ItemLimit(cfg.keychain_max_chars) if cfg.keychain_max_chars else _platform.ITEM_LIMIT
        )
        self._fp_key: bytes | None = None
        self._fp_lock = threading.Lock()

    # Values -----------------------------------------------------------------------------

    def write_value(self, tx: WriteTx, ref: RecordRef, value: str) -> None:
        """Store ``value`` for ``ref`` in the keychain, in chunks past the item limit."""
        # Runs last inside the index transaction: if the keychain refuses, the index row is
        # rolled back with it.
        key = item_key(ref.scope, ref.name)
        limit = self.limit
        old_chunks = self._chunk_count(key)
        if limit is None or limit.fits(value):
            self.client.set(key, value)
            self._drop_chunks(key, 1, old_chunks)
            return
        if not self.chunking:
            unit = "characters" if limit.unit == "chars" else "bytes of UTF-16"
            raise SecretTooLarge(
                f"{key}: the value has {limit.measure(value)} {unit}; this keychain holds at "
                f"most {limit.size} per item and vault.chunking is off",
                hint="Enable vault.chunking, or store a smaller value.",
                limit=limit.size,
            )
        parts = limit.split(value)
        for index, part in enumerate(parts, start=1):
            self.client.set(f"{key}#{index}", part)
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        # The header goes last: until it is written, readers still see the old value.
        self.client.set(key, f"{_CHUNK_HEADER}{len(parts)}:{digest}")
        self._drop_chunks(key, len(parts) + 1, old_chunks)

    def read_value(self, ref: RecordRef) -> str | None:
        """``ref``'s value from the keychain (joining its chunks), or None if the item is gone."""
        key = item_key(ref.scope, ref.name)
        head = self.client.get(key)
        if head is None or not head.startswith(_CHUNK_HEADER):
            return head
        names = _chunk_names(key, head)
        return _joined(key, head, [self.client.get(n) for n in names])

    def read_values(self, refs: Sequence[RecordRef]) -> dict[RecordRef, str | None]:
        """Each of ``refs``' values (None where the item is gone) in one keychain batch where
        the keychain allows (the Secret Service), else one read each."""
        keys = {ref: item_key(ref.scope, ref.name) for ref in refs}
        found = self.client.read_many(keys.values())
        if found is None:
            return {ref: self.read_value(ref) for ref in refs}
        heads = {ref: found.get(key) for ref, key in keys.items()}
        chunked = {
            ref: _chunk_names(keys[ref], head)
            for ref, head in heads.items()
            if head is not None and head.startswith(_CHUNK_HEADER)
        }
        parts = self.client.read_many(n for names in chunked.values() for n in names) or {}
        values: dict[RecordRef, str | None] = {}
        for ref, head in heads.items():
            if ref in chunked and head is not None:
                values[ref] = _joined(keys[ref], head, [parts.get(n) for n in chunked[ref]])
            else:
                values[ref] = head
        return values

    def delete_value(self, tx: WriteTx, scope: str, name: str) -> bool:
        """Delete ``scope/name``'s keychain item (and its chunks); True if it existed."""
        key = item_key(scope, name)
        chunks = self._chunk_count(key)
        existed = self.client.delete(key)
        self._drop_chunks(key, 1, chunks)
        return existed

    def _chunk_count(self, key: str) -> int:
        if self.limit is None:
            return 0
        head = self.client.get(key)
        if head is None or not head.startswith(_CHUNK_HEADER):
            return 0
        return int(head[len(_CHUNK_HEADER) :].partition(":")[0])

    def _drop_chunks(self, key: str, start: int, end: int) -> None:
        for index in range(start, end + 1):
            self.client.delete(f"{key}#{index}")

    def stored_keys(self) -> set[tuple[str, str]] | None:
        """Every ``(scope, name)`` with a keychain item, or None where the keychain cannot list."""
        names = self.client.usernames()
        if names is None:
            return None
        found = set()
        for user in names:
            if user.startswith(INTERNAL_PREFIX) or "#" in user:
                continue
            pair = split_item_key(user)
            if pair is not None:
                found.add(pair)
        return found

    def fingerprint_key(self) -> bytes:
        """The HMAC key for value fingerprints, kept in the keychain (made once)."""
        with self._fp_lock:
            if self._fp_key is None:
                self._fp_key = self.client.ensure_key(_FP_KEY_ITEM)
            return self._fp_key

    def describe(self) -> dict[str, Any]:
        """Which keyring backend is in use and why (never a value)."""
        return {
            "backend": self.kind,
            "keyring": self.client.backend_name,
            "service": self.client.service,
            "selected": self.client.reason,
            "timeout_s": self.client.timeout,
            # Kept for readers of the old key; "item_limit" says the unit too.
            "max_chars_per_item": (
                self.limit.size if self.limit is not None and self.limit.unit == "chars" else None
            ),
            "item_limit": (
                None if self.limit is None else {"size": self.limit.size, "unit": self.limit.unit}
            ),
            "chunking": self.chunking,
        }

    def close(self) -> None:
        """Forget the fingerprint key held in memory."""
        self._fp_key = None
