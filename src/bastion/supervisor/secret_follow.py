"""The secrets a supervisor is lent, and secrets that change under a running service.

:class:`SecretSource` is the protocol through which ``app.py`` lends the supervisor the
vault (the supervisor never imports ``bastion.vault``); :class:`SecretWatch` is a source
whose changes can be followed. The rest of this module is the ``on_secret_change`` reactions.

A :class:`~bastion.supervisor.supervisor.Supervisor` whose secret source is a
:class:`SecretWatch` (the vault, through ``app.py``) keeps,
for each run, what it gave the child: per env variable the secret's (scope, name), its value
and its *stamp* (the vault's fingerprint of the value, read before the value). When the
source's watch wakes up -- vault.db changed, whoever wrote it: this process, the CLI, an app
using the library, another daemon's API -- :meth:`SecretFollower.check_secrets` reads the
current stamps of every secret a running service was given (the index only, no value, no
audit row) and compares. A wake-up is never acted on by itself: a checkpoint, an audit row or
our own reads change the file too, and only a different stamp is a change. Per service:

- ``restart`` (the default, as Vault Agent's): the service is stopped by its stop policy,
  the STOPPING/STOPPED reasons naming the secret, and started again at once (no backoff, not
  a failure): the start resolves the new value, and the new run's redactor holds the new
  value *and* the old one (a child may still print the old one: a cache, a log of the
  rotation), before the child exists. The old run's output was drained by the old redactor
  before the stop finished, so no line is left in flight between them.
- ``signal:NAME``: the new values are resolved and added to the running child's redactor
  (the old ones stay: its environment still holds them) *before* the program gets the
  signal, since it may fetch the new value (through the API) and print it at once.
- ``none``: nothing but an event.
- a **deleted** secret stops the service (unless ``none``), the reason naming the secret and
  the way back; it is never restarted without the variable.

Exactly once per change: one reaction at a time per service, and a reaction changes what
the service was given (a restart resolves again; a signal records the new stamps), so the
same change is never seen twice. A change that lands while a reaction runs is picked up by
the check that follows every reaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from bastion.errors import BastionError
from bastion.supervisor.process import kill_record
from bastion.supervisor.redact import Redactor
from bastion.supervisor.states import ServiceState

if TYPE_CHECKING:
    from bastion.supervisor.service import _Service

__all__ = ["ChangeWatch", "SecretFollower", "SecretKey", "SecretSource", "SecretWatch"]

log = logging.getLogger(__name__)
S = ServiceState


class SecretSource(Protocol):
    """Where the supervisor gets secret values; ``app.py`` fills it with the vault.

    ``resolve`` returns the value or raises a ``BastionError`` subclass (e.g.
    ``SecretNotFound``) whose message names the secret, never its value.
    """

    def resolve(self, scope: str, name: str) -> str:
        """The value of ``scope/name`` for a child's environment (raise ``SecretNotFound`` if
        absent)."""


class ChangeWatch(Protocol):
    """Wake-ups when the secrets behind a :class:`SecretWatch` may have changed."""

    async def changed(self) -> None:
        """Return once something may have changed since the previous return."""

    def close(self) -> None:
        """Stop watching."""


#: (scope, name) of a secret.
SecretKey = tuple[str, str]


@runtime_checkable
class SecretWatch(Protocol):
    """A :class:`SecretSource` whose changes running services follow (``on_secret_change``).

    A *stamp* is whatever changes when a secret's value does (the vault: the fingerprint its
    index keeps, an HMAC of the value). It is read *before* the value, so a change landing
    between the two reads costs one restart too many, never a missed one.
    """

    def resolve(self, scope: str, name: str) -> str:
        """As :meth:`SecretSource.resolve`."""

    def resolve_stamped(self, scope: str, name: str) -> tuple[str, str]:
        """The value of ``scope/name`` and its stamp."""

    def stamps(self, keys: Collection[SecretKey]) -> dict[SecretKey, str | None]:
        """The current stamp of each secret (None: it no longer exists). Reads no value."""

    def watch(self) -> ChangeWatch:
        """Wake-ups when any secret may have changed (the caller compares stamps)."""


def _names(keys: list[SecretKey]) -> str:
    return ", ".join(f"{scope}/{name}" for scope, name in keys)


class SecretFollower:
    """The part of ``Supervisor`` that follows its secret source (a mixin: it works on the
    supervisor's services and transitions)."""

    _services: dict[str, _Service]

    if TYPE_CHECKING:
        _secrets: Any

        def _set(self, svc: _Service, target: ServiceState, reason: str, **extra: Any) -> None:
            pass

        def _launch(self, svc: _Service, *, resume_open: bool = False) -> None:
            pass

        async def stop(self, name: str) -> Any:
            pass

        def emit(self, kind: str, subject: str, data: dict[str, Any]) -> None:
            pass

    async def _follow_secrets(self, watch: ChangeWatch) -> None:
        while True:
            await watch.changed()
            await self._check_quietly()

    async def _check_quietly(self) -> None:
        try:
            await self.check_secrets()
        except BastionError:
            # vault.db could not be read this time (busy past the timeout, a disk error):
            # the next change looks again, and so does the next start.
            log.exception("supervisor: could not compare the services' secrets")

    async def check_secrets(self) -> list[str]:
        """Compare what each running service was given with the secrets now; start the
        reaction its ``on_secret_change`` asks for. Returns the services reacting."""
        source: SecretWatch = self._secrets
        todo = {
            name: svc
            for name, svc in self._services.items()
            if svc.given and svc.active and svc.secret_action is None
        }
        keys = {key for svc in todo.values() for key, _v, _s in (svc.given or {}).values()}
        if not keys:
            return []
        now = await asyncio.to_thread(source.stamps, keys)
        reacting = []
        for name, svc in todo.items():
            given = svc.given
            if not given or svc.secret_action is not None or not svc.active:
                continue  # the run ended, or a reaction began, while the stamps were read
            changed = sorted(
                {k for k, _v, stamp in given.values() if now.get(k) not in (None, stamp)}
            )
            deleted = sorted({k for k, _v, _s in given.values() if k in now and now[k] is None})
            if not changed and not deleted:
                continue
            if svc.spec.on_secret_change == "none":  # noqa: S105 - a mode, not a password
                # Seen once: remember the new stamps so this change is reported only once.
                svc.given = {
                    env: (k, v, now.get(k) or "") if k in now else (k, v, s)
                    for env, (k, v, s) in given.items()
                }
                data = {"secrets": [f"{s}/{n}" for s, n in changed + deleted], "action": "none"}
                self.emit("service.secret_changed", name, data)
                continue
            svc.secret_action = asyncio.get_running_loop().create_task(
                self._react(svc, changed, deleted), name=f"secret-change:{name}"
            )
            reacting.append(name)
        return reacting

    async def _react(
        self, svc: _Service, changed: list[SecretKey], deleted: list[SecretKey]
    ) -> None:
        name = svc.spec.name
        try:
            if deleted:
                what = _names(deleted)
                self.emit("service.secret_deleted", name, {"secrets": what.split(", ")})
                svc.stop_reason = (
                    f"secret {what} was deleted: the service is stopped rather than run "
                    "without it (set the secret again, then start the service)"
                )
                await self.stop(name)
                return
            signum = svc.spec.secret_change_signal
            if signum is None:
                await self._restart_for(svc, changed)
            else:
                await self._signal_for(svc, changed, signum)
        except BastionError as err:
            # Nobody awaits this task: an error left in it would surface only as asyncio's
            # "Task exception was never retrieved" traceback, long after, with no reaction.
            log.warning("supervisor: %s: the reaction to a secret change failed: %s", name, err)
        finally:
            svc.secret_action = None
        # What changed while this reaction ran (after the restart resolved, say) was seen by
        # a check that skipped this service: look once more.
        await self._check_quietly()

    async def _restart_for(self, svc: _Service, changed: list[SecretKey]) -> None:
        name, what = svc.spec.name, _names(changed)
        old = [(env, v) for env, (k, v, _s) in (svc.given or {}).items() if k in changed]
        self.emit(
            "service.secret_changed", name, {"secrets": what.split(", "), "action": "restart"}
        )
        svc.stop_reason = f"secret {what} changed: restarting with the new value"
        await self.stop(name)
        if svc.active or svc.state is not S.STOPPED or name not in self._services:
            return  # someone else started or removed it meanwhile: theirs is the last word
        svc.retired = old
        self._set(svc, S.STARTING, f"secret {what} changed: started with the new value")
        self._launch(svc)  # STOPPED -> STARTING

    async def _signal_for(
        self, svc: _Service, changed: list[SecretKey], signum: signal.Signals
    ) -> None:
        name, what = svc.spec.name, _names(changed)
        run, given = svc.run, svc.given
        if run is None or given is None:
            return
        source: SecretWatch = self._secrets
        fresh = {}
        try:
            for env, (key, _value, _stamp) in given.items():
                if key in changed:
                    value, stamp = await asyncio.to_thread(source.resolve_stamped, *key)
                    fresh[env] = (key, value, stamp)
        except BastionError as err:
            # The vault says it changed but cannot give the new value (a locked keychain, a
            # damaged record, deleted in between): the program must not be told to fetch a
            # value its redactor does not hold, nor left on one that was replaced. Stopped,
            # as a restart that could not resolve it would not start.
            svc.stop_reason = (
                f"secret {what} changed but its new value cannot be read: {err.message} "
                "(start the service again once the vault gives it)"
            )
            self.emit(
                "service.secret_changed",
                name,
                {"secrets": what.split(", "), "action": "stop", "error": err.code},
            )
            await self.stop(name)
            return
        # The redactor learns the new values before the program is told (it may fetch and
        # print them at once); the old ones stay: its environment still holds them.
        pairs = [*svc.redacting, *((env, v) for env, (_k, v, _s) in fresh.items())]
        try:
            redactor = await asyncio.to_thread(Redactor, pairs)
        except BastionError as err:  # SecretTooShort: the new value cannot be hidden
            svc.stop_reason = f"secret {what} changed to a value that {err.message}"
            await self.stop(name)
            return
        if svc.run is not run:
            return  # the run ended meanwhile: the next start resolves the new value anyway
        svc.redactor, svc.redacting = redactor, pairs
        if run.capture is not None:
            run.capture.use_redactor(redactor)
        svc.given = {**given, **fresh}
        with contextlib.suppress(OSError):
            kill_record(run.child.program or run.child.record, signum)
        data = {"secrets": what.split(", "), "action": f"signal:{signum.name}"}
        self.emit("service.secret_changed", name, data)
