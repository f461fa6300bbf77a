"""Settings: where the home is and how each part behaves, frozen once loaded.

Precedence, lowest first: built-in defaults, ``<home>/bastion.toml``, ``BASTION_*`` environment
variables. The home itself comes from ``BASTION_HOME`` (or the caller), else the platform data
directory from ``platformdirs``.

Environment names are ``BASTION_<SECTION>_<KEY>`` in upper case, e.g.
``BASTION_STORE_BUSY_TIMEOUT_MS=8000`` sets ``[store] busy_timeout_ms``. Every value is checked
against its declared type and bounds; a bad one raises ``ConfigError`` naming the key, what is
wrong with the value, and the accepted form.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bastion._lazy import lazy_exports
from bastion._text import read_text
from bastion.errors import ConfigError

if TYPE_CHECKING:
    from bastion._configdoc import ConfigEntry, explain_config, render_config_markdown

__all__ = [
    "ApiConfig",
    "ArchiveConfig",
    "BackupConfig",
    "Config",
    "ConfigEntry",
    "RetentionConfig",
    "StoreConfig",
    "SupervisorConfig",
    "VaultConfig",
    "default_home",
    "resolve_home",
    "env_name",
    "explain_config",
    "load_config",
    "load_config_past_file",
    "parse_duration",
    "render_config_markdown",
]

CONFIG_FILE = "bastion.toml"
ENV_PREFIX = "BASTION_"


def _bounds(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"min": lo, "max": hi}


@dataclasses.dataclass(frozen=True, slots=True)
class StoreConfig:
    """[store]: how bastion.db (and every other database) is opened and written."""

    #: SQLite's ``synchronous`` pragma: NORMAL (WAL-safe, a crash may lose the last commits) or
    #: FULL (each commit is fsynced).
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    #: How long a write waits for another process's write lock before ``StoreBusy``.
    busy_timeout_ms: int = dataclasses.field(default=5000, metadata=_bounds(2000, 600_000))
    #: Read-only connections in the reader pool.
    readers: int = dataclasses.field(default=4, metadata=_bounds(1, 64))
    #: Group concurrent write units into one transaction: "auto" does it when commits are
    #: fsyncs (synchronous = FULL), where it multiplies durable throughput; under NORMAL a
    #: commit is cheap and callers take the writer in turn instead.
    group_commit: Literal["auto", "always", "never"] = "auto"
    #: WAL size past which the watchdog forces a checkpoint and names the reader that held it.
    wal_cap_bytes: int = dataclasses.field(default=64 * 1024 * 1024, metadata=_bounds(1024 * 1024))
    #: Seconds between the WAL watchdog's looks.
    wal_watchdog_interval_s: float = dataclasses.field(default=5.0, metadata=_bounds(0.05, 3600))
    #: What to do when the open-time check finds corruption: refuse, or quarantine and restore.
    #: "auto" refuses in the CLI and library (an operator decides) and recovers in the daemon
    #: (a desktop app must come back up on its own); "refuse"/"recover" force one for both.
    on_corrupt: Literal["auto", "refuse", "recover"] = "auto"
    #: Seconds between the daemon's full integrity_check runs (0 disables them).
    integrity_check_interval_s: int = dataclasses.field(default=24 * 3600, metadata=_bounds(0))
    #: The largest database (MiB, its WAL included) whose full-text indexes the full
    #: integrity check compares with their tables: the comparison copies each index and its
    #: text into temporary storage (memory for an encrypted database) and takes a few times
    #: integrity_check. A larger file's indexes are reported "not compared"; 0 compares
    #: whatever the size.
    fts_compare_max_mb: int = dataclasses.field(default=256, metadata=_bounds(0))
    #: Cap on the open-time ``quick_check``; larger files get the header check only.
    open_check_max_bytes: int = dataclasses.field(default=256 * 1024 * 1024, metadata=_bounds(0))
    #: Time cap on the open-time ``quick_check``; an interrupted check is inconclusive, not bad.
    open_check_max_s: float = dataclasses.field(default=5.0, metadata=_bounds(0.01, 3600))
    #: Encryption at rest (SQLite3 Multiple Ciphers, AEGIS-256) of bastion.db and
    #: vault.db, their WAL and backups: "off" (plaintext files) or "required" (a plaintext
    #: file is refused until `bastion db encrypt` converts it). See docs/security.md.
    encryption: Literal["off", "required"] = "off"
    #: Where the database key comes from: "keychain" (a random key the OS keychain keeps,
    #: made on first use), "env" (a base64 256-bit key in key_env) or "passphrase" (Argon2id
    #: of the passphrase in passphrase_env or typed at a prompt, salted per file).
    key_source: Literal["keychain", "env", "passphrase"] = "keychain"
    #: Environment variable holding the base64 key when key_source = "env".
    key_env: str = "BASTION_DB_KEY"
    #: Environment variable holding the passphrase when key_source = "passphrase".
    passphrase_env: str = "BASTION_DB_PASSPHRASE"  # noqa: S105 - a variable name, not a secret


@dataclasses.dataclass(frozen=True, slots=True)
class VaultConfig:
    """[vault]: where secret values live and how they are protected."""

    #: Where values live: "keychain" (the OS keychain through keyring) or "encrypted-file"
    #: (AES-256-GCM records in vault.db; for machines without a keychain).
    backend: Literal["keychain", "encrypted-file"] = "keychain"
    #: The keychain service name items are stored under.
    service: str = "bastion"
    #: Deadline for each keychain call (a locked keychain may wait on a prompt).
    keychain_timeout_s: float = dataclasses.field(default=5.0, metadata=_bounds(0.1, 120))
    #: How the encrypted-file backend's data key is wrapped.
    key_source: Literal["passphrase", "env", "keychain"] = "env"
    #: Environment variable holding the base64 key when key_source = "env" (`bastion secrets
    #: keygen` makes one).
    key_env: str = "BASTION_VAULT_KEY"
    #: Environment variable holding the passphrase when key_source = "passphrase" (else it is asked
    #: for on a terminal).
    passphrase_env: str = "BASTION_VAULT_PASSPHRASE"  # noqa: S105 - a variable name, not a secret
    #: Split values larger than the keychain's item limit over several items.
    chunking: bool = True
    #: Whether `secrets get --reveal` and the API's reveal may return a value.
    allow_reveal: bool = True
    #: keyring backend for vault.backend = "keychain": "auto" picks the highest-priority OS
    #: keychain; or a dotted class name. Plaintext and priority <= 0 backends are refused.
    keyring_backend: str = "auto"
    #: Largest value (characters) one keychain item holds before chunking; 0 = the platform's
    #: own limit (Windows' Credential Manager: 2,560 bytes of UTF-16; none elsewhere).
    keychain_max_chars: int = dataclasses.field(default=0, metadata=_bounds(0))
    #: Argon2id memory (KiB) for a passphrase-wrapped data key (stored with the file when
    #: created).
    argon2_memory_kib: int = dataclasses.field(default=64 * 1024, metadata=_bounds(8 * 1024))
    #: Argon2id passes (time cost) for a passphrase-wrapped data key.
    argon2_time_cost: int = dataclasses.field(default=3, metadata=_bounds(1, 100))
    #: Per-name value rules, "NAME=rule[:argument]", e.g. "STT_URL=https_url".
    rules: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class SupervisorConfig:
    """[supervisor]: how sidecar services are run and their output captured."""

    #: Start every service marked autostart when the daemon starts.
    autostart: bool = True
    #: Captured lines written to the logs table per batch, at most.
    log_batch_lines: int = dataclasses.field(default=1000, metadata=_bounds(1, 1_000_000))
    #: Longest wait before a partial batch of captured lines is written.
    log_batch_ms: int = dataclasses.field(default=50, metadata=_bounds(1, 60_000))
    #: Captured lines held in memory while the store is slow; past it whole chunks are dropped,
    #: counted, and a "[bastion] N lines dropped" line is stored in their place.
    log_buffer_lines: int = dataclasses.field(default=100_000, metadata=_bounds(100))
    #: A longer captured line is split at this size (never inside a secret or a UTF-8
    #: character).
    log_line_max_bytes: int = dataclasses.field(default=16 * 1024, metadata=_bounds(256))
    #: How children die with the supervisor (even by kill -9): "pdeathsig" (Linux: the kernel
    #: kills them), "pipe" (a small shim leads each child's group and ends it when its link to
    #: the supervisor reads EOF; any POSIX system), "job" (Windows: a Job Object that dies
    #: with the supervisor), "auto" = job on Windows, else pipe (on Linux the shim is a
    #: subreaper and also ends a double-forked grandchild at once; pdeathsig leaves that to
    #: the next start's sweep).
    parent_death: Literal["auto", "pdeathsig", "pipe", "job"] = "auto"
    #: Linux: "auto" puts each service's run in a cgroup v2 of its own where this process's
    #: cgroup is writable (a delegated subtree, or root), so stop, a restart and the shim
    #: end every process of it with cgroup.kill, even one that left its group and tree;
    #: "off" never touches cgroups (the process group and the shim alone, as elsewhere).
    cgroups: Literal["auto", "off"] = "auto"
    #: How the daemon follows services/ while it runs: "auto" (the OS's file events through
    #: watchfiles, polling if they cannot be had), "poll" (look every watch_poll_ms), "off"
    #: (only `bastion services reload` / POST /v1/services/reload, and API reads, pick up edits).
    watch: Literal["auto", "poll", "off"] = "auto"
    #: Milliseconds between looks at services/ when watch = "poll" (or no file events).
    watch_poll_ms: int = dataclasses.field(default=500, metadata=_bounds(50, 60_000))


@dataclasses.dataclass(frozen=True, slots=True)
class ApiConfig:
    """[api]: the daemon's loopback HTTP API."""

    #: Address to listen on (loopback only unless `serve --i-know-this-is-exposed`).
    host: str = "127.0.0.1"
    #: Port to listen on; 0 picks a free one (written to run/daemon.json).
    port: int = dataclasses.field(default=0, metadata=_bounds(0, 65535))
    #: Extra browser origins allowed to call the API, e.g. ["tauri://localhost"].
    allowed_origins: tuple[str, ...] = ()
    #: Largest request body accepted (413 above it).
    max_body_bytes: int = dataclasses.field(default=1024 * 1024, metadata=_bounds(1024))
    #: Where the API token lives: ``run/token`` (0600), or the vault (``bastion/api-token``).
    token_store: Literal["file", "vault"] = "file"  # noqa: S105 - a setting
    #: Seconds a connection has to deliver a whole request (head and body) once it starts
    #: waiting for one; not reset by each byte (slowloris). See bastion/api/connections.py.
    header_timeout_s: float = dataclasses.field(default=10.0, metadata=_bounds(0.05, 3600))
    #: Connections one client address may hold; one more closes its longest-waiting idle one.
    max_connections_per_client: int = dataclasses.field(default=64, metadata=_bounds(2, 100_000))
    #: Serve GET /metrics (Prometheus; behind the token) and count what it reports.
    metrics: bool = True
    #: Seconds between samples of a few metrics for the dashboard's pictures (kept in memory,
    #: the last hour; GET /v1/metrics/series).
    metrics_sample_s: float = dataclasses.field(default=10.0, metadata=_bounds(1, 3600))


@dataclasses.dataclass(frozen=True, slots=True)
class BackupConfig:
    """[backup]: the daemon's scheduled backups and their rotation."""

    #: Seconds between scheduled backups of each database (0 disables them).
    interval_s: int = dataclasses.field(default=3600, metadata=_bounds(0))
    #: Newest backups always kept.
    keep_last: int = dataclasses.field(default=5, metadata=_bounds(1))
    #: Days for which the newest backup of the day is kept.
    keep_daily: int = dataclasses.field(default=7, metadata=_bounds(0))
    #: Weeks for which the newest backup of the week is kept.
    keep_weekly: int = dataclasses.field(default=4, metadata=_bounds(0))
    #: Pre-migration backups kept per database.
    pre_migrate_keep: int = dataclasses.field(default=5, metadata=_bounds(1))


@dataclasses.dataclass(frozen=True, slots=True)
class RetentionConfig:
    """[retention]: how long rows of the built-in tables are kept."""

    #: Captured log lines older than this are pruned (0 keeps them).
    logs_days: int = dataclasses.field(default=30, metadata=_bounds(0))
    #: At most this many log lines are kept, oldest pruned first (0: no cap).
    logs_max_rows: int = dataclasses.field(default=1_000_000, metadata=_bounds(0))
    #: Activity rows (who did what) older than this are pruned (0 keeps them).
    activity_days: int = dataclasses.field(default=365, metadata=_bounds(0))
    #: Event rows (state transitions, backups) older than this are pruned (0 keeps them).
    events_days: int = dataclasses.field(default=90, metadata=_bounds(0))
    #: Seconds between the daemon's retention runs (0 disables them).
    interval_s: int = dataclasses.field(default=3600, metadata=_bounds(0))
    #: Rows deleted per write transaction, so a prune never holds the write lock for long.
    batch_rows: int = dataclasses.field(default=2000, metadata=_bounds(1, 1_000_000))
    #: Reclaim space (incremental_vacuum or VACUUM) once free pages pass this share of the file.
    vacuum_freelist_ratio: float = dataclasses.field(default=0.25, metadata=_bounds(0.0, 1.0))


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number and a unit, ``90s``, ``10m``, ``36h``, ``7d``, ``2w``
    (several may follow each other: ``1d12h``). Raises ``ValueError`` naming the form."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([smhdw])", text.strip().lower())
    rebuilt = "".join(f"{n}{u}" for n, u in parts)
    if not parts or rebuilt != re.sub(r"\s+", "", text.strip().lower()):
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit (s, m, h, d, w), e.g. 7d or 90m"
        )
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


@dataclasses.dataclass(frozen=True, slots=True)
class ArchiveConfig:
    """[archive]: continuous archiving of the WAL for point-in-time restores (`db restore --at`)."""

    #: Archive bastion.db's WAL while the daemon runs (library apps: ``Home.start_archiving()``).
    enabled: bool = True
    #: Where the archive lives (best on another disk or a synced folder); empty = <home>/archive.
    #: A relative path is taken from the home.
    dir: str = ""
    #: Most seconds between two archiving passes (the recovery point objective): new WAL frames
    #: are copied at least this often, and at every checkpoint.
    interval_s: float = dataclasses.field(default=1.0, metadata=_bounds(0.05, 3600))
    #: How far back a restore can reach: archived history and base snapshots older than this
    #: are pruned together (a duration: 7d, 36h, 90m).
    retain: str = "7d"
    #: Seconds between new base snapshots of a generation (a restore replays at most this much).
    snapshot_interval_s: int = dataclasses.field(default=24 * 3600, metadata=_bounds(60))
    #: Frames archived since the last checkpoint past which the archiver checkpoints (SQLite's
    #: own autocheckpoint is handed to the archiver while it runs).
    checkpoint_frames: int = dataclasses.field(default=1000, metadata=_bounds(10, 10_000_000))

    def __post_init__(self) -> None:
        try:
            seconds = parse_duration(self.retain)
        except ValueError as err:
            raise ConfigError(
                f"[archive] retain: {err}", hint='Use e.g. retain = "7d"', key="retain"
            ) from None
        if seconds < 60:
            raise ConfigError(
                f"[archive] retain: {self.retain!r} is under a minute",
                hint='Keep at least a minute of history, e.g. retain = "7d".',
                key="retain",
            )

    @property
    def retain_s(self) -> float:
        """``retain`` in seconds."""
        return parse_duration(self.retain)


_SECTIONS: dict[str, type[Any]] = {
    "store": StoreConfig,
    "vault": VaultConfig,
    "supervisor": SupervisorConfig,
    "api": ApiConfig,
    "backup": BackupConfig,
    "retention": RetentionConfig,
    "archive": ArchiveConfig,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    """Everything bastion reads from config; pass it down, never read it from a global."""

    home: Path
    store: StoreConfig = StoreConfig()
    vault: VaultConfig = VaultConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    api: ApiConfig = ApiConfig()
    backup: BackupConfig = BackupConfig()
    retention: RetentionConfig = RetentionConfig()
    archive: ArchiveConfig = ArchiveConfig()

    @property
    def db_path(self) -> Path:
        """``<home>/bastion.db``: settings, logs, activity, events, supervisor state."""
        return self.home / "bastion.db"

    @property
    def vault_db_path(self) -> Path:
        """``<home>/vault.db``: the secret index (and ciphertext for the encrypted file)."""
        return self.home / "vault.db"

    @property
    def backups_dir(self) -> Path:
        """``<home>/backups``: verified backups and their manifests."""
        return self.home / "backups"

    @property
    def archive_dir(self) -> Path:
        """``[archive] dir`` (relative to the home), else ``<home>/archive``: WAL history."""
        if not self.archive.dir:
            return self.home / "archive"
        return self.home / Path(self.archive.dir).expanduser()

    @property
    def quarantine_dir(self) -> Path:
        """``<home>/quarantine``: damaged databases moved aside by recovery or restore."""
        return self.home / "quarantine"

    @property
    def services_dir(self) -> Path:
        """``<home>/services``: one ``<name>.toml`` spec per service."""
        return self.home / "services"

    @property
    def run_dir(self) -> Path:
        """``<home>/run`` (0700): the API token, the daemon lock and handshake."""
        return self.home / "run"


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """``BASTION_HOME`` if set, else the per-user data directory for ``bastion``."""
    environ = os.environ if env is None else env
    explicit = environ.get("BASTION_HOME")
    if explicit:
        return Path(explicit).expanduser().absolute()
    import platformdirs  # only needed when no home is given

    return Path(platformdirs.user_data_dir("bastion", appauthor=False))


def resolve_home(home: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> Path:
    """The home ``load_config(home, env)`` reads: ``home`` made absolute, else
    :func:`default_home`."""
    if home is not None and not os.fspath(home):
        raise ValueError("home is an empty path: give a folder, or None for the default home")
    return Path(home).expanduser().absolute() if home is not None else default_home(env)


def load_config(
    home: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Read defaults, then ``<home>/bastion.toml``, then ``BASTION_*`` variables from ``env``,
    then ``overrides`` from code, e.g. ``{"vault": {"backend": "encrypted-file"}}`` (section
    -> key -> value, checked like a ``bastion.toml`` value: a typo is a ``ConfigError`` naming
    the known keys)."""
    return _load(home, env, overrides)[0]


def load_config_past_file(
    home: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> tuple[Config, ConfigError | None]:
    """``(config, None)`` as :func:`load_config`; when ``<home>/bastion.toml`` is what does
    not load, ``(the config without it, the file's error)``: defaults, then ``env``.

    For what repairs a bad file and must not be stopped by it: ``bastion config history`` and
    ``rollback`` (the versions to go back to are in bastion.db, whose path the file does not
    set), ``bastion doctor`` (the file's error is one problem among the others). An error
    that is not the file's (a bad ``BASTION_*`` variable) is raised as ever."""
    try:
        return _load(home, env, None)[0], None
    except ConfigError as err:
        try:
            config = _load(home, env, None, read_file=False)[0]
        except ConfigError:
            raise err from None
        return config, err


def _load(
    home: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None,
    overrides: Mapping[str, Mapping[str, Any]] | None,
    *,
    read_file: bool = True,
) -> tuple[Config, dict[str, dict[str, str]]]:
    """The config and, per section and key, where each non-default value came from;
    ``read_file=False``: without ``bastion.toml`` (see :func:`load_config_past_file`)."""
    environ = os.environ if env is None else env
    home_path = resolve_home(home, environ)
    raw: dict[str, dict[str, tuple[Any, str]]] = {name: {} for name in _SECTIONS}

    toml_path = home_path / CONFIG_FILE
    # A directory, an unreadable file or one in another encoding is an error naming it, never
    # "no bastion.toml": the settings it holds would be silently replaced by the defaults.
    toml_text = (
        read_text(toml_path, ConfigError, CONFIG_FILE, missing_ok=True, private=True)
        if read_file
        else None
    )
    if toml_text is not None:
        import tomllib  # only when the file exists: `bastion settings get` starts cold

        try:
            data = tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(
                f"{toml_path} is not valid TOML: {err}",
                hint="Fix the syntax at the position named, or go back to a recorded version "
                "(`bastion config history`, then `bastion config rollback ID`), or move the "
                "file away to use the defaults.",
                path=str(toml_path),
            ) from err
        for section, values in data.items():
            if section not in _SECTIONS:
                raise ConfigError(
                    f"{toml_path}: unknown section [{section}]",
                    hint=f"Known sections: {', '.join(sorted(_SECTIONS))}.",
                    key=section,
                )
            if not isinstance(values, dict):
                raise ConfigError(
                    f"{toml_path}: {section} must be a table ([{section}])", key=section
                )
            for key, value in values.items():
                raw[section][key] = (value, f"{toml_path} [{section}] {key}")

    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in {
            "BASTION_HOME",
            "BASTION_VAULT_KEY",
            "BASTION_VAULT_PASSPHRASE",
        }:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section in _SECTIONS and key:
            raw[section][key] = (value, f"environment variable {name}")

    for section, values in (overrides or {}).items():
        if section not in _SECTIONS:
            raise ConfigError(
                f"overrides: unknown section {section!r}",
                hint=f"Known sections: {', '.join(sorted(_SECTIONS))}.",
                key=section,
            )
        for key, value in values.items():
            raw[section][key] = (value, f"overrides [{section}] {key}")

    built = {section: _build_section(cls, raw[section]) for section, cls in _SECTIONS.items()}
    sources = {section: {k: w for k, (_v, w) in values.items()} for section, values in raw.items()}
    return Config(home=home_path, **built), sources


def _build_section(cls: type[Any], values: dict[str, tuple[Any, str]]) -> Any:
    if not values:
        return cls()  # defaults; resolving the annotations costs more than the rest
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, (value, where) in values.items():
        if key not in fields:
            raise ConfigError(
                f"{where}: unknown key {key!r}",
                hint=f"Known keys: {', '.join(sorted(fields))}.",
                key=key,
            )
        kwargs[key] = _coerce(value, hints[key], fields[key].metadata, where)
    return cls(**kwargs)


#: The longest repetition of a refused value an error holds (a pasted file is not repeated).
_SHOWN_MAX = 80


def _shown(value: Any, where: str) -> str:
    """``value`` as an error repeats it (its repr, cut at :data:`_SHOWN_MAX`), unless it looks
    like a credential (a key pasted into the wrong setting): the error is printed, logged by
    the daemon and recorded in its events, where a secret must never be. Described, then."""
    from bastion._credentials import find_credential

    if find_credential(where.rsplit(" ", 1)[-1], value) is not None:
        return "a value that looks like a credential (not repeated here)"
    shown = repr(value)
    return shown if len(shown) <= _SHOWN_MAX else f"{shown[: _SHOWN_MAX - 3]}..."


def _coerce(value: Any, annotation: Any, meta: Mapping[str, Any], where: str) -> Any:
    from_env = isinstance(value, str) and where.startswith("environment")
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ConfigError(
                f"{where}: {_shown(value, where)} is not one of the accepted values",
                hint=f"Use one of: {', '.join(repr(c) for c in choices)}.",
            )
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if from_env and value.lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
            return value.lower() in {"1", "true", "yes", "on"}
        raise ConfigError(
            f"{where}: {_shown(value, where)} is not a boolean", hint="Use true or false."
        )
    if annotation in (int, float):
        number: float
        try:
            if isinstance(value, bool):
                raise TypeError
            number = (
                annotation(value) if from_env or isinstance(value, int | float) else _raise_type()
            )
        except (TypeError, ValueError):
            kind = "a whole number" if annotation is int else "a number"
            raise ConfigError(
                f"{where}: {_shown(value, where)} is not {kind}", hint=f"Use {kind}, e.g. 5000."
            ) from None
        lo, hi = meta.get("min"), meta.get("max")
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            bounds = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
            raise ConfigError(
                f"{where}: {_shown(value, where)} is out of range", hint=f"Use a value {bounds}."
            )
        return number
    if annotation is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(
                f"{where}: {_shown(value, where)} is not a non-empty string",
                hint='Use a quoted string, e.g. "bastion".',
            )
        return value
    if origin is tuple or isinstance(annotation, types.GenericAlias):
        if from_env:
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ConfigError(
            f"{where}: {_shown(value, where)} is not a list of strings",
            hint='Use e.g. ["tauri://localhost"].',
        )
    raise TypeError(f"unsupported config annotation {annotation!r}")  # pragma: no cover


def _raise_type() -> float:
    raise TypeError


def env_name(section: str, key: str) -> str:
    """The environment variable that sets ``[section] key``: ``BASTION_SECTION_KEY``."""
    return f"{ENV_PREFIX}{section.upper()}_{key.upper()}"


# What `bastion config show` and docs/config.md say lives in bastion._configdoc, loaded on first
# use: every command loads this module, and `settings get` (a fresh interpreter per scripted
# read, issue 7) should not build ConfigEntry too.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        name: "bastion._configdoc"
        for name in (
            "ConfigEntry",
            "explain_config",
            "render_config_markdown",
            "_field_docs",
            "_toml_value",
            "_type_text",
        )
    },
)
