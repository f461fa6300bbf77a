"""The services folder while the daemon runs: ``<home>/services/*.toml`` kept in step with a
running :class:`~bastion.supervisor.supervisor.Supervisor`.

The files are the one source of truth. :meth:`ServiceCatalog.reload` reads them all and
carries the difference over to the supervisor:

- a new valid file: the service is registered (STOPPED), and started when its spec says
  ``autostart = true`` (and ``[supervisor] autostart`` is on);
- a changed file: if a field the process is made from changed (:data:`PROCESS_FIELDS`:
  argv, cwd, env, env_allow, secrets, the output pipes) an active service is restarted on
  the new spec; otherwise the spec is swapped in place (probes rebuilt on the running child,
  restart/breaker/stop settings apply from the next decision);
- a removed file: the service is stopped (its stop policy) and forgotten;
- an invalid file: reported (:attr:`ServiceCatalog.problems`, a ``service.spec_invalid``
  event) and the version already running keeps running untouched.

Changes are noticed three ways: :meth:`watch` follows the folder (inotify read by the event
loop on Linux, FSEvents and the like through ``watchfiles`` elsewhere; if the OS watcher
cannot start, e.g. no inotify instance left, it polls),
:meth:`sync` compares a cheap fingerprint of the folder (names, sizes, mtimes, inodes) before
an API answer names a service, so the CLI and the API never disagree about which services
exist, and :meth:`reload` runs on request (``POST /v1/services/reload``).

:attr:`ServiceCatalog.history`, when given (the daemon gives the home's configuration history),
records every version a reload applied -- the text exactly as it was parsed -- and every
removal, with its author: ``api`` for :meth:`put` and :meth:`delete`, ``file`` for an edit
found in the folder (including, at the first reload, edits made while no daemon ran).

:meth:`put` is how an app declares a service: the JSON spec goes through the very code a
TOML file does (written as TOML, parsed back with ``tomllib``, validated by
:func:`~bastion.supervisor.spec.parse_spec`), and only a valid spec is written, atomically,
to the folder; the reload that follows applies it like any edited file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

from bastion._fs import atomic_write
from bastion.errors import BastionError, ServiceFileUnwritable, ServiceNotFound, ServiceSpecError
from bastion.supervisor.spec import NAME_RE, ServiceSpec, parse_spec, read_spec, spec_files
from bastion.supervisor.supervisor import Supervisor

__all__ = [
    "PROCESS_FIELDS",
    "ReloadReport",
    "ServiceCatalog",
    "SpecHistory",
    "SpecProblem",
    "changed_fields",
    "needs_restart",
    "reload_wait_s",
    "spec_to_toml",
]

log = logging.getLogger(__name__)

#: Fields the child process is made from: a change to any of them restarts an active service.
#: ``logs`` decides which pipes the child gets; ``stdio_probe`` (an MCP probe over stdio)
#: too, so it is compared as well (see :func:`changed_fields`).
PROCESS_FIELDS = ("argv", "cwd", "env", "env_allow", "secrets", "logs")
#: Fields compared to tell a changed spec from an unchanged one (``source`` is where it came
#: from, not what it says).
_COMPARED = tuple(f.name for f in dataclasses.fields(ServiceSpec) if f.name != "source")
#: Seconds the polling fallback waits between two looks at the folder.
POLL_S = 0.5
WatchMode = Literal["auto", "poll", "off"]


class SpecHistory(Protocol):
    """Where applied spec versions are recorded (``bastion.domains.confighistory``)."""

    def record_specs(self, texts: Mapping[str, str | None], author: str) -> Any:
        """Record each service's spec text (None: removed) as made by ``author``; an
        unchanged text records nothing. Blocking (a database write)."""


def changed_fields(old: ServiceSpec, new: ServiceSpec) -> tuple[str, ...]:
    """The spec fields that differ, in declaration order (``stdio_probe`` when the MCP
    stdio probe comes or goes: it changes the child's stdin/stdout)."""
    fields = [f for f in _COMPARED if getattr(old, f) != getattr(new, f)]
    if old.stdio_probe != new.stdio_probe:
        fields.append("stdio_probe")
    return tuple(fields)


def needs_restart(fields: tuple[str, ...]) -> bool:
    """Whether a change of these spec fields needs the process restarted."""
    return any(f in PROCESS_FIELDS or f == "stdio_probe" for f in fields)


@dataclasses.dataclass(frozen=True, slots=True)
class SpecProblem:
    """An invalid file in the services folder (what ``GET /v1/services/problems`` lists)."""

    name: str
    file: str
    code: str
    message: str
    hint: str
    key: str | None
    #: Wall clock of the reload that first found this exact problem.
    since: float
    #: Whether a previous version of the service is still running (kept untouched).
    running_previous: bool

    def to_dict(self) -> dict[str, Any]:
        """The problem as JSON-ready data."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class ReloadReport:
    """What one reload did, by service name."""

    added: tuple[str, ...] = ()
    started: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    problems: tuple[SpecProblem, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The reload as JSON-ready data."""
        data = {k: list(v) for k, v in dataclasses.asdict(self).items() if k != "problems"}
        data["problems"] = [p.to_dict() for p in self.problems]
        return data


def _unwritable(value: Any, key: str = "") -> tuple[str, str] | None:
    """The first key whose value TOML cannot hold, and why (JSON null, a non-string key)."""
    if value is None:
        return key or "(spec)", "null has no TOML form"
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{key}.{k}" if key else str(k), "keys must be strings"
            found = _unwritable(v, f"{key}.{k}" if key else k)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = _unwritable(v, f"{key}[{i}]")
            if found:
                return found
    return None


def _file_error(verb: str, path: Path, err: OSError) -> ServiceFileUnwritable:
    """The API's write or removal of a spec file refused by the disk, named (it was an
    untranslated OSError: a 500 "internal error" for a read-only or full disk)."""
    import errno

    cause = {
        errno.EROFS: f"{path.parent} is on read-only storage",
        errno.ENOSPC: f"the disk holding {path.parent} is full",
        errno.EDQUOT: f"the disk quota for {path.parent} is used up",
        errno.EACCES: f"this process may not change {path.parent} (mode or owner)",
        errno.EPERM: f"this process may not change {path.parent} (mode or owner)",
    }.get(err.errno or 0, err.strerror or str(err))
    return ServiceFileUnwritable(f"cannot {verb} {path}: {cause}", path=str(path))


def spec_to_toml(name: str, data: Mapping[str, Any]) -> str:
    """The TOML text of a spec given as JSON; a value TOML cannot hold is a ServiceSpecError
    naming its key."""
    import tomli_w

    found = _unwritable(data)
    if found is not None:
        key, why = found
        raise ServiceSpecError(
            f"service {name!r}: {key}: {why}",
            hint="Leave the key out for its default; use strings, numbers, booleans, lists "
            "and tables only.",
            key=key,
        )
    try:
        return tomli_w.dumps(dict(data))
    except (TypeError, ValueError) as err:  # pragma: no cover - JSON gives no other types
        raise ServiceSpecError(
            f"service {name!r}: the spec cannot be written as TOML: {err}", key=None
        ) from err


def _fingerprint(directory: Path) -> tuple[tuple[str, int, int, int], ...]:
    marks = []
    for path in spec_files(directory):
        try:
            st = path.stat()
        except OSError:
            continue  # removed between the listing and the stat: the next look sees it gone
        marks.append((path.name, st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(marks)


def _read_folder(
    directory: Path,
) -> tuple[dict[str, ServiceSpec], dict[str, ServiceSpecError], dict[str, str]]:
    """Every file's spec or error, by service name (the file's stem), and the text of each
    valid one. Blocking: run it in a thread. A name that is invalid as a service name is
    reported under its stem as well."""
    good: dict[str, ServiceSpec] = {}
    bad: dict[str, ServiceSpecError] = {}
    texts: dict[str, str] = {}
    for path in spec_files(directory):
        try:
            good[path.stem], texts[path.stem] = read_spec(path)
        except ServiceSpecError as err:
            bad[path.stem] = err
    return good, bad, texts


def reload_wait_s(directory: Path) -> float:
    """How long a reload of ``directory`` may wait on stops (seconds), for a client's
    deadline: the ``[stop] grace_s`` of every valid file added up. A reload answers once the
    services it restarts or removes are stopped, and it stops them one after another; which
    of them changed is the daemon's to tell, so every one counts. An invalid file counts for
    nothing: its running version keeps running. Blocking (reads the folder)."""
    try:
        good, _, _ = _read_folder(directory)
    except ServiceSpecError:
        return 0.0  # a folder that cannot be listed: the reload refuses it, without waiting
    return sum(spec.stop.grace_s for spec in good.values())


#: Seconds between a change in the folder and the watch's reload (see ``_watch_native``).
WATCH_SETTLE_S = 0.1


class ServiceCatalog:
    """Keeps a running supervisor in step with its services folder. Not thread-safe: use it
    on the supervisor's event loop. ``await start()`` to begin watching, ``await close()``."""

    def __init__(
        self,
        supervisor: Supervisor,
        directory: Path,
        *,
        autostart: bool = True,
        watch: WatchMode = "auto",
        poll_s: float = POLL_S,
        history: SpecHistory | None = None,
    ) -> None:
        self._sup = supervisor
        self.history = history
        self.directory = directory
        self._autostart = autostart
        self._watch_mode = watch
        self._poll_s = poll_s
        self._lock = asyncio.Lock()
        self._problems: dict[str, SpecProblem] = {}
        self._seen: tuple[tuple[str, int, int, int], ...] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        #: "inotify"-like native watching, "poll", or "off": what :meth:`watch` ended up using.
        self.watching: str = "off"

    @property
    def problems(self) -> list[SpecProblem]:
        """The spec files that are invalid now, by file name."""
        return [self._problems[k] for k in sorted(self._problems)]

    # --- reload ---------------------------------------------------------------------------

    async def sync(self) -> ReloadReport | None:
        """Reload if the folder changed since the last reload (a listing and a stat per file)."""
        marks = await asyncio.to_thread(_fingerprint, self.directory)
        if marks == self._seen:
            return None
        return await self.reload()

    async def reload(self) -> ReloadReport:
        """Read every file and apply the difference (see the module docstring)."""
        async with self._lock:
            return await self._reload()

    async def _reload(self, *, autostart: bool = True, author: str = "file") -> ReloadReport:
        marks = await asyncio.to_thread(_fingerprint, self.directory)
        good, bad, texts = await asyncio.to_thread(_read_folder, self.directory)
        sup = self._sup
        known = {s.name for s in sup.list()}
        added: list[str] = []
        started: list[str] = []
        restarted: list[str] = []
        updated: list[str] = []
        removed: list[str] = []
        unchanged: list[str] = []

        problems: dict[str, SpecProblem] = {}
        for name, err in sorted(bad.items()):
            old = self._problems.get(name)
            since = old.since if old is not None and old.message == err.message else time.time()
            problem = SpecProblem(
                name=name,
                file=str(err.details.get("file", self.directory / f"{name}.toml")),
                code=err.code,
                message=err.message,
                hint=err.hint,
                key=err.details.get("key"),
                since=since,
                running_previous=name in known,
            )
            problems[name] = problem
            if old is None or old.message != err.message:
                log.warning("service file %s is invalid: %s", problem.file, err.message)
                sup.emit("service.spec_invalid", name, problem.to_dict())

        for name in sorted(known - good.keys() - bad.keys()):
            await sup.remove(name)
            removed.append(name)
            sup.emit("service.removed", name, {"file": str(self.directory / f"{name}.toml")})

        for name, spec in sorted(good.items()):
            if name not in known:
                sup.add(spec)
                added.append(name)
                sup.emit("service.added", name, {"file": spec.source})
                if spec.autostart and self._autostart and autostart:
                    await sup.start(name)
                    started.append(name)
                continue
            fields = changed_fields(sup.spec(name), spec)
            if not fields:
                unchanged.append(name)
                continue
            did_restart = await sup.replace(spec, restart=needs_restart(fields))
            (restarted if did_restart else updated).append(name)
            sup.emit(
                "service.changed",
                name,
                {"file": spec.source, "fields": list(fields), "restarted": did_restart},
            )

        self._problems = problems
        self._seen = marks
        if self.history is not None:
            # What runs now: every valid text (unchanged ones record nothing) and every
            # removal. An invalid file is not a version: the previous one keeps running.
            applied: dict[str, str | None] = {**texts, **dict.fromkeys(removed)}
            try:
                await asyncio.to_thread(self.history.record_specs, applied, author)
            except BastionError as err:
                # The history is a record of what happened, never a reason for a reload to
                # fail: what was applied stays applied. A refusal of the disk or the
                # database (full, read-only, busy) is said in a line, not a traceback; the
                # next reload records every text again, and what changed then goes in.
                log.warning(
                    "could not record the services' versions in the history: %s. %s",
                    err.message,
                    err.hint,
                )
            except Exception:
                log.exception("could not record the services' versions in the history")
        return ReloadReport(
            added=tuple(added),
            started=tuple(started),
            restarted=tuple(restarted),
            updated=tuple(updated),
            removed=tuple(removed),
            unchanged=tuple(unchanged),
            problems=tuple(self.problems),
        )

    # --- declared through the API --------------------------------------------------------------

    async def put(self, name: str, data: Mapping[str, Any]) -> tuple[bool, ReloadReport]:
        """Validate ``data`` as the spec of ``name`` (the TOML path exactly), write it to
        ``<name>.toml`` atomically (0600) and reload. Returns (created, report). An invalid
        spec raises ``ServiceSpecError`` and nothing is written."""
        path = self.directory / f"{name}.toml"
        text = spec_to_toml(name, data)
        # Parsed back from the TOML text: the file that is written is exactly what was checked.
        await asyncio.to_thread(parse_spec, name, tomllib.loads(text), source=str(path))
        async with self._lock:
            created = not path.exists()
            await asyncio.to_thread(self._write, path, text)
            return created, await self._reload(author="api")

    def _write(self, path: Path, text: str) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            atomic_write(path, text)
        except OSError as err:
            raise _file_error("write", path, err) from err

    async def delete(self, name: str) -> ReloadReport:
        """Remove ``<name>.toml`` and reload (the service is stopped and forgotten)."""
        path = self.directory / f"{name}.toml"
        if not NAME_RE.match(name):
            raise ServiceNotFound(f"no service named {name!r}", service=name)
        async with self._lock:
            try:
                await asyncio.to_thread(path.unlink)
            except FileNotFoundError:
                raise ServiceNotFound(
                    f"no service file {path}",
                    hint="List services with `bastion services list`.",
                    service=name,
                ) from None
            except OSError as err:
                raise _file_error("remove", path, err) from err
            return await self._reload(author="api")

    # --- watching ------------------------------------------------------------------------------

    async def start(self, *, autostart: bool = True) -> ReloadReport:
        """First reload, then follow the folder in the background (per ``watch``).

        ``autostart=False``: this first reload starts nothing (the daemon registered the
        folder's specs before opening the supervisor, and its ``start_all`` resumes OPEN
        breakers instead of resetting them)."""
        async with self._lock:
            report = await self._reload(autostart=autostart)
        if self._watch_mode != "off":
            self._task = asyncio.get_running_loop().create_task(
                self._watch(), name="services-watch"
            )
        return report

    async def close(self) -> None:
        """Stop watching the folder."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _watch(self) -> None:
        mode = self._watch_mode
        while not self._stop.is_set():
            if mode == "auto" and self.directory.is_dir():
                try:
                    # Returns when the folder went away: poll below until it is back.
                    await self._watch_native()
                except FileNotFoundError:
                    pass  # removed as the watch began: the same
                except Exception as err:
                    # watchfiles falls back to polling only where inotify does not exist
                    # (ENOSYS); out of inotify instances or watches (EMFILE/ENOSPC) it raises.
                    log.warning("cannot watch %s (%s); polling it instead", self.directory, err)
                    self._sup.emit(
                        "supervisor.watch_fallback",
                        "supervisor",
                        {"dir": str(self.directory), "error": f"{type(err).__name__}: {err}"},
                    )
                    mode = "poll"
                    continue
            # Polling: also what "auto" does while the folder does not exist.
            self.watching = "poll" if mode == "poll" else "waiting for the folder"
            await self._reload_quietly()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._poll_s)

    async def _watch_native(self) -> None:
        from bastion._platform.filewatch import directory_watch

        watch = directory_watch(self.directory)  # OSError: out of inotify instances
        if watch is None:
            await self._watch_portable()
            return
        # inotify, read by the event loop: an idle daemon never wakes for the folder (issue
        # 22 §7; watchfiles' thread wakes every ``step``, 20 times a second). A removal of
        # the folder itself is an event too (``lost``): the caller polls until it is back.
        stop = self._stop
        self.watching = "native"
        try:
            # Whatever changed between the last look and the watch being set up.
            await self._reload_quietly()
            while not stop.is_set() and not watch.lost:
                changed = asyncio.ensure_future(watch.changed())
                stopped = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({changed, stopped}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in (changed, stopped):
                        task.cancel()
                if stop.is_set():
                    return
                # A moment's settling after the first event, as watchfiles' step and debounce
                # gave (50-100 ms): a burst of events (an atomic write's temp file and
                # rename, an editor's saves) makes one reload, and a writer that asks for a
                # reload right after its write (`config rollback`, the API) has it applied by
                # that request, under its own name, rather than by the watch as "file".
                await asyncio.sleep(WATCH_SETTLE_S)
                await self._reload_quietly()
        finally:
            watch.close()

    async def _watch_portable(self) -> None:
        """FSEvents, ReadDirectoryChangesW, or polling, through ``watchfiles``."""
        import watchfiles

        stop = self._stop
        self.watching = "native"
        first = True
        async for changes in watchfiles.awatch(
            self.directory,
            stop_event=stop,  # an asyncio.Event: awatch needs is_set() and wait()
            debounce=400,
            step=50,
            recursive=False,
            # Hidden temp files of atomic writes (.name.toml.XXXX.tmp) count as changes too;
            # the reload reads only *.toml, so a burst of them costs one cheap reload.
            watch_filter=None,
            force_polling=False,
            # An empty batch every poll interval: the removal of the watched folder itself
            # reports nothing, so whether it still exists is looked at then.
            rust_timeout=max(int(self._poll_s * 1000), 50),
            yield_on_timeout=True,
        ):
            if changes or first:
                # The first batch (at most rust_timeout in): whatever changed between the
                # last look and the OS watch being set up is picked up here.
                first = False
                await self._reload_quietly()
            if not self.directory.is_dir():
                # A watch on a removed folder never sees it come back: poll until it does.
                await self._reload_quietly()
                return

    async def _reload_quietly(self) -> None:
        try:
            await self.sync()
        except Exception:
            # A reload must never end the watch: the next change tries again.
            log.exception("reloading %s failed", self.directory)
