"""The encrypted-file backend as a ``keyring`` backend (entry point ``keyring.backends``).

Lets any keyring user (pip, twine, an app's own code) keep its passwords in bastion's encrypted
``vault.db`` on a headless machine, instead of a plaintext file or a dead end (keyring #370,
#569). Configure it explicitly (``keyring.core.set_keyring`` or ``PYTHON_KEYRING_BACKEND=
bastion.vault.keyring_backend.EncryptedFileKeyring``); its priority is low (1) and it is viable
only when ``BASTION_HOME`` is set, so it never displaces an OS keychain by surprise.

Mapping: keyring's ``service`` becomes the scope ``kr.<hex of service>`` and ``username`` the
name ``u.<hex of username>`` -- hex, because keyring allows any characters and bastion names do
not. Values go through the ordinary ``Vault`` (index, AES-256-GCM, audit with actor
``keyring``). Importing this module is cheap; the vault opens on first use.

Errors follow keyring's convention and stay bastion's: a vault that cannot be unlocked (a
wrong or missing ``BASTION_VAULT_KEY``) raises :class:`KeyringVaultLocked`, which is both
``bastion.errors.VaultLocked`` and ``keyring.errors.KeyringLocked``; any other bastion
failure raises :class:`KeyringVaultError`, both ``bastion.errors.VaultError`` and
``keyring.errors.KeyringError`` (the original is its ``__cause__``). So ``except
KeyringError`` in a keyring user's code works, and so does ``except BastionError``. The
combined classes live here, not in ``bastion.errors``, which imports nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.credentials import SimpleCredential
from keyring.errors import KeyringError, KeyringLocked, PasswordDeleteError, PasswordSetError

from bastion.errors import BastionError, VaultError, VaultLocked

__all__ = ["EncryptedFileKeyring", "KeyringVaultError", "KeyringVaultLocked"]


class KeyringVaultLocked(VaultLocked, KeyringLocked):
    """The vault cannot be unlocked (wrong or missing key): a ``VaultLocked`` that keyring
    users catch as ``KeyringLocked``."""


class KeyringVaultError(VaultError, KeyringError):
    """Any other failure of the vault behind the keyring API: a ``VaultError`` that keyring
    users catch as ``KeyringError``."""


@contextlib.contextmanager
def _as_keyring_errors() -> Iterator[None]:
    """Re-raise bastion errors as the combined classes above (same message and hint)."""
    from bastion.errors import SecretNotFound

    try:
        yield
    except (KeyringVaultLocked, KeyringVaultError, SecretNotFound):
        raise  # SecretNotFound: the keyring API answers None / PasswordDeleteError for it
    except VaultLocked as err:
        raise KeyringVaultLocked(err.message, hint=err.hint, **err.details) from err
    except BastionError as err:
        if isinstance(err, ValueError):  # a caller's mistake (a name too long): not ours
            raise
        raise KeyringVaultError(err.message, hint=err.hint, **err.details) from err


def _scope(service: str) -> str:
    return "kr." + service.encode("utf-8").hex()


def _name(username: str) -> str:
    return "u." + username.encode("utf-8").hex()


def _username(name: str) -> str:
    return bytes.fromhex(name[2:]).decode("utf-8")


class EncryptedFileKeyring(KeyringBackend):
    """keyring backend over bastion's encrypted-file vault (``<home>/vault.db``)."""

    #: Directory of the bastion home; default ``$BASTION_HOME``. Settable through
    #: ``KEYRING_PROPERTY_HOME`` or ``with_properties(home=...)`` like any keyring property.
    home: str | None = None

    @properties.classproperty
    def priority(cls) -> float:
        if not os.environ.get("BASTION_HOME"):
            raise RuntimeError("BASTION_HOME is not set")
        return 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._vault: Any = None
        self._lock = threading.Lock()

    @classmethod
    def for_vault(cls, vault: Any) -> EncryptedFileKeyring:
        """A keyring over an already open ``Vault`` (an app that holds one, or a test)."""
        backend = cls()
        backend._vault = vault
        return backend

    @property
    def name(self) -> str:
        """The backend's name as keyring lists it."""
        return "bastion encrypted-file vault"

    def _open(self) -> Any:
        with self._lock, _as_keyring_errors():
            if self._vault is None:
                import dataclasses

                from bastion._fs import ensure_private_dir
                from bastion.config import load_config
                from bastion.vault import Vault

                cfg = load_config(self.home or os.environ.get("BASTION_HOME"))
                cfg = dataclasses.replace(
                    cfg, vault=dataclasses.replace(cfg.vault, backend="encrypted-file")
                )
                ensure_private_dir(cfg.home)
                self._vault = Vault.open(cfg)
            return self._vault

    def get_password(self, service: str, username: str) -> str | None:
        """keyring API: the password of ``service``/``username``, or None."""
        from bastion.errors import SecretNotFound

        vault = self._open()
        try:
            with _as_keyring_errors():
                secret = vault.get(_name(username), scope=_scope(service), actor="keyring")
        except (SecretNotFound, ValueError):  # ValueError: a name bastion could not have stored
            return None
        return str(secret.reveal())

    def set_password(self, service: str, username: str, password: str) -> None:
        """keyring API: store ``password`` for ``service``/``username``."""
        vault = self._open()
        # keyring stores empty passwords too; bastion's rules are per name, none apply here.
        try:
            with _as_keyring_errors():
                vault.set(_name(username), password, scope=_scope(service), actor="keyring")
        except ValueError as err:  # service/username too long once hex-encoded
            raise PasswordSetError(str(err)) from err

    def delete_password(self, service: str, username: str) -> None:
        """keyring API: delete ``service``/``username``; ``PasswordDeleteError`` if absent."""
        from bastion.errors import SecretNotFound

        vault = self._open()
        try:
            with _as_keyring_errors():
                vault.delete(_name(username), scope=_scope(service), actor="keyring")
        except (SecretNotFound, ValueError) as err:
            raise PasswordDeleteError("Password not found") from err

    def get_credential(self, service: str, username: str | None) -> SimpleCredential | None:
        """keyring API: the credential for ``service`` (and ``username``), or None."""
        if username is not None:
            password = self.get_password(service, username)
            return None if password is None else SimpleCredential(username, password)
        vault = self._open()
        with _as_keyring_errors():
            metas = vault.list(scope=_scope(service))
        for meta in metas:
            user = _username(meta.name)
            password = self.get_password(service, user)
            if password is not None:
                return SimpleCredential(user, password)
        return None

    def close(self) -> None:
        """Close the vault this keyring opened."""
        with self._lock:
            if self._vault is not None:
                self._vault.close()
                self._vault = None
