"""Service specs: one TOML file per service under ``<home>/services/``, or the Python API.

A spec says what to run (``argv``, no shell), where (``cwd``), with which environment
(``env`` values, ``env_allow`` names copied from the daemon's environment, ``secrets``
references resolved at each start), how to tell it is healthy (``[health.startup]``,
``[health.liveness]``, ``[health.readiness]``), how to restart it (``[restart]``), when to
stop trying for a while (``[breaker]``), how to stop it (``[stop]``) and what to do with its
output (``[logs]``).

Everything is checked before anything starts: an unknown key, a missing program, a relative
``cwd``, a malformed reference or an ``env`` value that looks like a credential (an API key,
a token, a private key, a password: ``bastion._credentials``; a spec file is plain text, so
those go in the vault and ``secrets``) raises ``ServiceSpecError`` naming the file, the key
and the fix. A literal that only looks like one is accepted when its name is listed in
``allow_plaintext = ["NAME"]``. Specs are frozen values; the supervisor never mutates them.

    argv = ["python3", "-m", "speech_server", "--port", "8765"]
    cwd = "/opt/speech"
    env = { LOG_LEVEL = "info" }
    env_allow = ["LANG"]
    secrets = { OPENAI_API_KEY = "secret:global/openai" }

    [health.liveness]
    kind = "http"
    url = "http://127.0.0.1:8765/health"
    interval_s = 10

    [restart]
    policy = "on-failure"   # on-failure | always | never
"""

from __future__ import annotations

import dataclasses
import importlib.util
import ipaddress
import os
import re
import shutil
import signal as _signal
import tomllib
import typing
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from bastion._credentials import find_credential, secret_name_for
from bastion.errors import InvalidName, ServiceSpecError

__all__ = [
    "GRACE_MAX_S",
    "BreakerSpec",
    "HealthSpec",
    "LogSpec",
    "ProbeSpec",
    "RestartSpec",
    "SecretRef",
    "ServiceSpec",
    "StopSpec",
    "load_spec",
    "load_specs",
    "parse_spec",
    "read_spec",
    "spec_files",
    "validate_dir",
    "validate_service_name",
]

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
#: Names the API uses as words under /v1/services/ (``GET /v1/services/problems``).
RESERVED_NAMES = frozenset({"problems", "reload"})
#: Windows' device names: ``con.toml`` (and ``con.anything.toml``) cannot be a file there, so a
#: service named so would be lost when its home is used on Windows; refused everywhere.
DEVICE_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_REF_RE = re.compile(r"^secret:(?P<scope>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.:@-]+)$")
ProbeKind = Literal["process", "tcp", "http", "exec", "mcp", "websocket", "grpc"]
#: The probe kinds that need a package beyond the core install, and how to get it.
PROBE_PACKAGES = {"grpc": ("grpclib", "pip install 'bastion[grpc]'")}


def _b(lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    return {"min": lo, "max": hi}


def _shown_reference(text: str) -> str:
    """``text`` quoted if it is meant as a reference (``secret:...``); otherwise not repeated:
    a value written where a reference goes is most often the secret itself."""
    if text.startswith("secret:"):
        return repr(text[:200])
    return "the value (not repeated here: it may be the secret itself)"


@dataclasses.dataclass(frozen=True, slots=True)
class SecretRef:
    """``secret:scope/name``: where a secret injected as an env variable comes from."""

    scope: str
    name: str

    @classmethod
    def parse(cls, text: str) -> SecretRef:
        """A reference from ``secret:scope/name``; ``ValueError`` for anything else."""
        match = SECRET_REF_RE.match(text)
        if not match:
            raise ValueError(f"{_shown_reference(text)} is not a secret reference")
        return cls(match["scope"], match["name"])

    def __str__(self) -> str:
        return f"secret:{self.scope}/{self.name}"


@dataclasses.dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One health probe. ``kind`` picks the check; the other keys apply to some kinds."""

    #: What the probe checks: "process" (the process is alive), "tcp" (a connection to host:port
    #: opens), "http" (GET url answers a status in expect_status), "exec" (command exits 0), "mcp"
    #: (an MCP ping is answered), "websocket" (a WebSocket at url opens, answers send with
    #: expect, and closes cleanly), "grpc" (the gRPC health service at host:port answers
    #: SERVING; needs bastion[grpc]).
    kind: ProbeKind = "process"
    #: Seconds between checks.
    interval_s: float = dataclasses.field(default=1.0, metadata=_b(0.001, 3600))
    #: Seconds one check may take before it counts as failed.
    timeout_s: float = dataclasses.field(default=1.0, metadata=_b(0.01, 600))
    #: Consecutive failures before the probe counts as failed.
    failure_threshold: int = dataclasses.field(default=3, metadata=_b(1, 100_000))
    #: Seconds after spawn before the first check.
    initial_delay_s: float = dataclasses.field(default=0.0, metadata=_b(0, 3600))
    #: tcp, grpc: the host to connect to.
    host: str = "127.0.0.1"
    #: tcp, grpc: the port to connect to.
    port: int = dataclasses.field(default=0, metadata=_b(0, 65535))
    #: http: the URL to GET; mcp over http: the server's streamable HTTP endpoint; websocket:
    #: the ws:// URL to open.
    url: str = ""
    #: Inclusive range of HTTP status codes that count as healthy.
    expect_status: tuple[int, ...] = (200, 399)
    #: exec: the argv to run (no shell); exit status 0 is healthy.
    command: tuple[str, ...] = ()
    #: For ``mcp``: ping over the child's own stdin/stdout, or over streamable HTTP at ``url``.
    transport: Literal["stdio", "http"] = "stdio"
    #: websocket: a text message sent once the connection is open (none when empty).
    send: str = ""
    #: websocket: text the first message received must contain (when set, the probe waits
    #: for a message; an empty expect with a send takes any answer, or none).
    expect: str = ""
    #: grpc: the service name asked of grpc.health.v1.Health/Check ("" is the whole server).
    service: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class HealthSpec:
    """Kubernetes semantics: startup gates the rest; liveness restarts; readiness reports."""

    #: [health.startup]: until it passes the service is STARTING; failing it past its threshold is
    #: a failed start.
    startup: ProbeSpec | None = None
    #: [health.liveness]: while RUNNING; failing it past its threshold restarts the service
    #: (default: the process is alive).
    liveness: ProbeSpec | None = None
    #: [health.readiness]: reported as ready/not ready; never restarts anything.
    readiness: ProbeSpec | None = None

    def probes(self) -> tuple[ProbeSpec, ...]:
        """The probes configured: startup, liveness, readiness (those set)."""
        return tuple(p for p in (self.startup, self.liveness, self.readiness) if p is not None)


@dataclasses.dataclass(frozen=True, slots=True)
class RestartSpec:
    """Seed 001: max 3 restarts in 5 min, backoff 1 s -> 60 s doubling, with jitter."""

    #: When to restart: "on-failure" (a non-zero exit, a signal, a failed liveness probe), "always"
    #: (any exit), "never".
    policy: Literal["on-failure", "always", "never"] = "on-failure"
    #: Restarts allowed within window_s; one more opens the circuit breaker.
    max_restarts: int = dataclasses.field(default=3, metadata=_b(0, 10_000))
    #: The sliding window (seconds) restarts are counted in.
    window_s: float = dataclasses.field(default=300.0, metadata=_b(0.001, 86_400 * 7))
    #: Delay before the first restart.
    backoff_initial_s: float = dataclasses.field(default=1.0, metadata=_b(0, 3600))
    #: Each further restart waits this many times longer.
    backoff_factor: float = dataclasses.field(default=2.0, metadata=_b(1, 100))
    #: The longest delay between restarts.
    backoff_max_s: float = dataclasses.field(default=60.0, metadata=_b(0, 86_400))
    #: +- fraction of each delay, drawn uniformly.
    jitter: float = dataclasses.field(default=0.1, metadata=_b(0, 1))
    #: A run healthy this long resets the backoff to ``backoff_initial_s``.
    reset_after_s: float = dataclasses.field(default=60.0, metadata=_b(0, 86_400))


@dataclasses.dataclass(frozen=True, slots=True)
class BreakerSpec:
    """Seed 001: open 30 s, then half-open; 2 healthy checks close it."""

    #: Consecutive failures that open the breaker (the Nth opens it; a run healthy for
    #: restart.reset_after_s forgives them); 0: only a spent restart budget opens it.
    failure_threshold: int = dataclasses.field(default=0, metadata=_b(0, 10_000))
    #: Seconds the breaker stays OPEN (no start) before a half-open trial.
    open_timeout_s: float = dataclasses.field(default=30.0, metadata=_b(0.001, 86_400))
    #: Each time the breaker opens again, the timeout grows by this factor (1: it stays
    #: open_timeout_s).
    open_timeout_factor: float = dataclasses.field(default=2.0, metadata=_b(1, 100))
    #: The longest open timeout.
    open_timeout_max_s: float = dataclasses.field(default=600.0, metadata=_b(0.001, 86_400 * 7))
    #: Healthy checks in HALF_OPEN that close the breaker.
    success_threshold: int = dataclasses.field(default=2, metadata=_b(1, 1000))


#: The longest stop grace period a spec may set (seconds).
GRACE_MAX_S: float = 3600


@dataclasses.dataclass(frozen=True, slots=True)
class StopSpec:
    """Seed 001: SIGTERM, 5 s grace, then SIGKILL to the whole process group."""

    #: The signal sent to the whole process group to stop it, e.g. "SIGTERM", "SIGINT".
    signal: str = "SIGTERM"
    #: Seconds to wait after the signal before SIGKILL to the group (on Linux, where
    #: [supervisor] cgroups can be used, also cgroup.kill of the run's own cgroup, which ends
    #: a process that left the group too).
    grace_s: float = dataclasses.field(default=5.0, metadata=_b(0, GRACE_MAX_S))

    @property
    def signum(self) -> _signal.Signals:
        """The stop signal as a ``signal.Signals``."""
        return _signal.Signals[self.signal]


@dataclasses.dataclass(frozen=True, slots=True)
class LogSpec:
    """``[logs]`` of a spec: whether output is captured, and the level of each stream."""

    #: Store stdout and stderr lines in the logs table (secrets redacted).
    capture: bool = True
    #: The level stdout lines are stored with.
    stdout_level: Literal["debug", "info", "warning", "error"] = "info"
    #: The level stderr lines are stored with.
    stderr_level: Literal["debug", "info", "warning", "error"] = "warning"


@dataclasses.dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A validated service. Build with :func:`parse_spec` (Python) or :func:`load_spec` (TOML)."""

    #: The service's name: the file name without .toml (a name key, if present, must match it).
    name: str
    #: The program and its arguments, run without a shell.
    argv: tuple[str, ...]
    #: Working directory (default: the daemon's).
    cwd: Path | None = None
    #: Environment variables set for the child (names and plain values; never secrets).
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Names copied from the daemon's own environment (the child starts from an empty one).
    env_allow: tuple[str, ...] = ()
    #: Names in env whose values only look like credentials (else refused: use secrets).
    allow_plaintext: tuple[str, ...] = ()
    #: Environment variables filled from the vault at spawn: NAME = "secret:scope/name".
    secrets: Mapping[str, SecretRef] = dataclasses.field(default_factory=dict)
    #: The health probes ([health.startup], [health.liveness], [health.readiness]).
    health: HealthSpec = HealthSpec()
    #: [restart]: the restart policy.
    restart: RestartSpec = RestartSpec()
    #: [breaker]: the circuit breaker after too many restarts.
    breaker: BreakerSpec = BreakerSpec()
    #: [stop]: how the service is stopped.
    stop: StopSpec = StopSpec()
    #: [logs]: output capture.
    logs: LogSpec = LogSpec()
    #: Start it when the daemon (or `bastion services run`) starts.
    autostart: bool = True
    #: What happens when a secret it references is set, rotated or deleted while it runs:
    #: "restart" (with the new value), "signal:HUP" (any signal name: the program re-reads it
    #: itself), "none". A deleted secret stops it unless "none".
    on_secret_change: str = "restart"  # noqa: S105 - a mode, not a password
    #: Where the spec came from (a file path or ``<python>``), for error messages.
    source: str = "<python>"

    @property
    def secret_change_signal(self) -> _signal.Signals | None:
        """The signal ``on_secret_change = "signal:NAME"`` sends; None for restart/none."""
        if not self.on_secret_change.startswith(SIGNAL_PREFIX):
            return None
        return _signal_named(self.on_secret_change[len(SIGNAL_PREFIX) :])

    @property
    def stdio_probe(self) -> bool:
        """An MCP probe talks over the child's stdin/stdout, so those are pipes, not logs."""
        return any(p.kind == "mcp" and p.transport == "stdio" for p in self.health.probes())


_SECTIONS: dict[str, type[Any]] = {
    "restart": RestartSpec,
    "breaker": BreakerSpec,
    "stop": StopSpec,
    "logs": LogSpec,
}
_TOP_KEYS = {"name", "argv", "cwd", "env", "env_allow", "secrets", "health", "autostart"}
_TOP_KEYS |= {"allow_plaintext", "on_secret_change"}
SIGNAL_PREFIX = "signal:"


def _signal_named(text: str) -> _signal.Signals:
    """``HUP`` or ``SIGHUP`` as a signal; ``KeyError`` for anything else."""
    name = text if text.startswith("SIG") else f"SIG{text}"
    if name.startswith("SIG_"):
        raise KeyError(text)
    return _signal.Signals[name]


_TOP_KEYS |= set(_SECTIONS)
_PROBE_ROLES = ("startup", "liveness", "readiness")


class _Where:
    """Builds ``ServiceSpecError`` messages that name the file and the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, key: str, problem: str, fix: str) -> ServiceSpecError:
        return ServiceSpecError(
            f"{self.source}: {key}: {problem}", hint=fix, file=self.source, key=key
        )


def _coerce(where: _Where, key: str, value: Any, annotation: Any, meta: Mapping[str, Any]) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise where.error(
                key, f"{value!r} is not accepted", f"Use one of: {', '.join(map(repr, choices))}."
            )
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise where.error(key, f"{value!r} is not a boolean", "Use true or false.")
        return value
    if annotation in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise where.error(key, f"{value!r} is not a number", "Use a number, e.g. 5.")
        if annotation is int and not isinstance(value, int):
            raise where.error(key, f"{value!r} is not a whole number", "Use e.g. 3.")
        lo, hi = meta.get("min"), meta.get("max")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise where.error(
                key, f"{value!r} is out of range", f"Use a value between {lo} and {hi}."
            )
        return annotation(value)
    if annotation is str:
        if not isinstance(value, str):
            raise where.error(key, f"{value!r} is not a string", "Use a quoted string.")
        return value
    if origin is tuple:
        (item_type, *_rest) = typing.get_args(annotation)
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, item_type) and not isinstance(v, bool) for v in value
        ):
            raise where.error(
                key, f"{value!r} is not a list of {item_type.__name__}", "Use a TOML array."
            )
        return tuple(value)
    raise TypeError(f"unsupported spec annotation {annotation!r}")  # pragma: no cover


def _section(where: _Where, prefix: str, cls: type[Any], data: Any) -> Any:
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise where.error(prefix, "must be a table", f"Write it as [{prefix}] with keys.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise where.error(
                f"{prefix}.{key}",
                "unknown key",
                f"Known keys in [{prefix}]: {', '.join(sorted(fields))}.",
            )
        kwargs[key] = _coerce(where, f"{prefix}.{key}", value, hints[key], fields[key].metadata)
    return cls(**kwargs)


def _probe(where: _Where, role: str, data: Any) -> ProbeSpec:
    probe: ProbeSpec = _section(where, f"health.{role}", ProbeSpec, data)
    key = f"health.{role}"
    if probe.kind in ("tcp", "grpc") and not probe.port:
        raise where.error(f"{key}.port", f"a {probe.kind} probe needs a port", "Set port = 8765.")
    if probe.kind == "grpc" and not _is_loopback(probe.host):
        raise where.error(
            f"{key}.host",
            f"{probe.host!r} is not this machine",
            'Set host = "127.0.0.1"; probes only talk to this machine.',
        )
    if probe.kind == "http" or (probe.kind == "mcp" and probe.transport == "http"):
        _loopback_url(where, f"{key}.url", probe.url, ("http",), "http://127.0.0.1:PORT/health")
    if probe.kind == "websocket":
        _loopback_url(where, f"{key}.url", probe.url, ("ws", "wss"), "ws://127.0.0.1:PORT/ws")
        # A spec is plain text: what a probe sends is no place for a token.
        found = find_credential(f"{key}.send", probe.send)
        if found is not None:
            raise where.error(
                f"{key}.send",
                f"looks like {found[1]}; a spec is plain text, so it was refused",
                "Send a message that proves liveness without a credential (a ping).",
            )
    if probe.kind in PROBE_PACKAGES:
        package, install = PROBE_PACKAGES[probe.kind]
        if importlib.util.find_spec(package) is None:
            raise where.error(
                f"{key}.kind",
                f"a {probe.kind} probe needs the {package!r} package, which is not installed",
                f"Install it: {install}.",
            )
    if probe.kind == "exec" and not probe.command:
        raise where.error(
            f"{key}.command", "an exec probe needs a command", 'Set command = ["check"].'
        )
    if len(probe.expect_status) != 2 or probe.expect_status[0] > probe.expect_status[1]:
        raise where.error(
            f"{key}.expect_status", "must be [low, high]", "Use e.g. expect_status = [200, 299]."
        )
    if probe.kind == "exec":
        resolved = _resolve_program(where, f"{key}.command[0]", probe.command[0], None)
        probe = dataclasses.replace(probe, command=(resolved, *probe.command[1:]))
    return probe


def _is_loopback(host: str) -> bool:
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _loopback_url(
    where: _Where, key: str, url: str, schemes: tuple[str, ...], example: str
) -> None:
    """``url`` must be ``scheme://`` a loopback host (by its parsed host: a name that merely
    starts like one, as ``127.0.0.1.example.com``, is not)."""
    try:
        parts = urllib.parse.urlsplit(url)
        scheme, host, _port = parts.scheme, parts.hostname or "", parts.port
    except ValueError:  # a port that is not a number, a bad IPv6 literal
        scheme, host = "", ""
    if scheme not in schemes or not _is_loopback(host):
        kinds = " or ".join(f"{s}://" for s in schemes)
        raise where.error(
            key,
            f"{url!r} is not a loopback {kinds} URL",
            f'Set url = "{example}"; probes only talk to this machine.',
        )


def _refuse_credentials(where: _Where, env: Mapping[str, str], allowed: Any) -> None:
    """A credential written into ``env`` would sit in a plain file and every listing of it."""
    if not isinstance(allowed, list | tuple) or not all(isinstance(k, str) for k in allowed):
        raise where.error(
            "allow_plaintext", "must be a list of env names", 'Use allow_plaintext = ["NAME"].'
        )
    for env_name, value in env.items():
        if env_name in allowed:
            continue
        found = find_credential(env_name, value)
        if found is None:
            continue
        name = secret_name_for(env_name.lower())
        raise where.error(
            f"env.{env_name}",
            f"the value looks like {found[1]}; a spec is plain text, so it was refused",
            f"Store it in the vault (`bastion secrets set {name} --prompt`) and inject it with "
            f'secrets = {{ {env_name} = "secret:global/{name}" }} instead of env. If it is not '
            f'a secret, add allow_plaintext = ["{env_name}"] to the spec.',
        )


def _resolve_program(where: _Where, key: str, program: str, cwd: Path | None) -> str:
    if not program:
        raise where.error(key, "empty program", "Name the program to run.")
    if os.sep in program:
        path = Path(program)
        if not path.is_absolute():
            path = (cwd or Path.cwd()) / path
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise where.error(
                key, f"{program!r} does not exist or is not executable", "Fix the path or chmod +x."
            )
        return str(path)
    # Children get an empty environment (no PATH), so the program is resolved once, here.
    found = shutil.which(program)
    if found is None:
        raise where.error(
            key, f"program {program!r} not found on PATH", "Install it or give an absolute path."
        )
    return found


def validate_service_name(name: str) -> str:
    """Return ``name`` if it can name a service (the stem of ``<name>.toml``: lower-case
    letters, digits and ``_ . -``, at most 63), else raise ``InvalidName``."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidName(
            f"{name!r} is not a valid service name",
            hint="Service names are the file names in <home>/services/ without .toml: "
            "lower-case letters, digits and `_ . -`, starting with a letter or digit.",
            kind="service name",
        )
    return name


def _refuse_untextual(where: _Where, value: Any, key: str = "") -> None:
    """Every key and string of a spec is text an argv, a path or an environment can carry: a
    NUL (a TOML ``\\u0000`` escape, JSON's too) fails the spawn, or reads as "not a directory"
    or "not executable"; a lone surrogate (JSON's ``\\udcXX``) cannot even be written to the
    spec's file."""
    if isinstance(value, Mapping):
        for k, v in value.items():
            # Shown in the error: a lone surrogate in a key is written as its escape.
            shown = str(k).encode("utf-8", "backslashreplace").decode("utf-8")
            inner = f"{key}.{shown}" if key else shown
            if isinstance(k, str):
                _refuse_untextual(where, k, inner)
            _refuse_untextual(where, v, inner)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _refuse_untextual(where, v, f"{key}[{i}]")
    elif isinstance(value, str):
        if "\x00" in value:
            raise where.error(
                key,
                "holds a NUL character, which no argument, path or environment variable can carry",
                "Remove the NUL (a \\u0000 escape).",
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise where.error(
                key, "is not UTF-8 text (a lone surrogate escape)", "Write it as UTF-8 text."
            ) from None


def parse_spec(name: str, data: Mapping[str, Any], *, source: str = "<python>") -> ServiceSpec:
    """Validate a spec given as a mapping (the TOML document, or built in Python)."""
    where = _Where(source)
    if not NAME_RE.match(name):
        raise where.error(
            "name",
            f"{name!r} is not a valid service name",
            "Use lowercase letters, digits, '.', '_' or '-' (max 63), starting alphanumeric.",
        )
    if name in RESERVED_NAMES:
        raise where.error(
            "name",
            f"{name!r} is reserved (the API uses /v1/services/{name})",
            "Choose another name for the service (rename the file).",
        )
    device = name.split(".", 1)[0]
    if device in DEVICE_NAMES:
        said = "is" if device == name else f"starts with {device!r},"
        raise where.error(
            "name",
            f"{name!r} {said} a device name on Windows: no file there can be called {name}.toml",
            f"Choose another name for the service (rename the file), e.g. {device}-svc.",
        )
    for key in data:
        if key not in _TOP_KEYS:
            raise where.error(key, "unknown key", f"Known keys: {', '.join(sorted(_TOP_KEYS))}.")
    _refuse_untextual(where, data)
    if "name" in data and data["name"] != name:
        raise where.error(
            "name",
            f"{data['name']!r} differs from the file name {name!r}",
            "Remove the key or rename the file.",
        )
    argv = data.get("argv")
    if not isinstance(argv, list | tuple) or not argv or not all(isinstance(a, str) for a in argv):
        raise where.error(
            "argv", "must be a non-empty list of strings (no shell)", 'Use argv = ["prog", "arg"].'
        )
    cwd: Path | None = None
    if "cwd" in data:
        raw_cwd = data["cwd"]
        if not isinstance(raw_cwd, str | Path) or not Path(raw_cwd).is_absolute():
            raise where.error(
                "cwd", f"{raw_cwd!r} is not an absolute path", "Use an absolute directory."
            )
        cwd = Path(raw_cwd)
        if not cwd.is_dir():
            raise where.error(
                "cwd", f"{str(cwd)!r} is not a directory", "Create it or fix the path."
            )
    program = _resolve_program(where, "argv[0]", argv[0], cwd)

    env = data.get("env", {})
    if not isinstance(env, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise where.error("env", "must be a table of string values", 'Use env = { KEY = "value" }.')
    env_allow = data.get("env_allow", [])
    if not isinstance(env_allow, list | tuple) or not all(isinstance(k, str) for k in env_allow):
        raise where.error("env_allow", "must be a list of names", 'Use env_allow = ["LANG"].')
    raw_secrets = data.get("secrets", {})
    if not isinstance(raw_secrets, Mapping):
        raise where.error(
            "secrets", "must be a table", 'Use secrets = { KEY = "secret:scope/name" }.'
        )
    secrets: dict[str, SecretRef] = {}
    for env_name, ref in raw_secrets.items():
        try:
            secrets[env_name] = ref if isinstance(ref, SecretRef) else SecretRef.parse(str(ref))
        except ValueError:
            raise where.error(
                f"secrets.{env_name}",
                f"{_shown_reference(str(ref))} is not a secret reference",
                'Use "secret:SCOPE/NAME", e.g. "secret:global/openai".',
            ) from None
    for key, names in (("env", env), ("env_allow", env_allow), ("secrets", secrets)):
        for env_name in names:
            if not ENV_NAME_RE.match(env_name):
                raise where.error(
                    f"{key}.{env_name}",
                    "not a valid environment variable name",
                    "Use [A-Za-z_][A-Za-z0-9_]*.",
                )
    allow_plaintext = data.get("allow_plaintext", [])
    _refuse_credentials(where, env, allow_plaintext)
    clash = (set(env) | set(env_allow)) & set(secrets)
    if clash:
        first = sorted(clash)[0]
        raise where.error(
            f"secrets.{first}", "also set in env/env_allow", "Set each variable in one place only."
        )

    health_data = data.get("health", {})
    if isinstance(health_data, HealthSpec):
        health = health_data
    else:
        if not isinstance(health_data, Mapping):
            raise where.error("health", "must be a table", "Use [health.liveness] sections.")
        for role in health_data:
            if role not in _PROBE_ROLES:
                raise where.error(
                    f"health.{role}",
                    "unknown probe role",
                    "Use health.startup, health.liveness or health.readiness.",
                )
        health = HealthSpec(
            **{
                role: _probe(where, role, health_data[role])
                for role in _PROBE_ROLES
                if role in health_data
            }
        )
    sections = {key: _section(where, key, cls, data.get(key, {})) for key, cls in _SECTIONS.items()}
    stop: StopSpec = sections["stop"]
    if stop.signal not in _signal.Signals.__members__:
        raise where.error(
            "stop.signal",
            f"{stop.signal!r} is not a signal name",
            'Use e.g. "SIGTERM" or "SIGINT".',
        )
    autostart = data.get("autostart", True)
    if not isinstance(autostart, bool):
        raise where.error("autostart", f"{autostart!r} is not a boolean", "Use true or false.")
    on_change = _on_secret_change(where, data.get("on_secret_change", "restart"))
    return ServiceSpec(
        name=name,
        argv=(program, *argv[1:]),
        cwd=cwd,
        env=dict(env),
        env_allow=tuple(env_allow),
        allow_plaintext=tuple(allow_plaintext),
        secrets=secrets,
        health=health,
        autostart=autostart,
        on_secret_change=on_change,
        source=source,
        **sections,
    )


def _on_secret_change(where: _Where, value: Any) -> str:
    fix = 'Use "restart", "none" or "signal:NAME" (e.g. "signal:HUP").'
    if value in ("restart", "none"):
        return str(value)
    if isinstance(value, str) and value.startswith(SIGNAL_PREFIX):
        try:
            _signal_named(value[len(SIGNAL_PREFIX) :])
        except KeyError:
            raise where.error(
                "on_secret_change",
                f"{value[len(SIGNAL_PREFIX) :]!r} is not a signal name",
                fix,
            ) from None
        return value
    raise where.error("on_secret_change", f"{value!r} is not accepted", fix)


def load_spec(path: Path) -> ServiceSpec:
    """Read and validate ``<name>.toml``; the service is named after the file."""
    return read_spec(path)[0]


def read_spec(path: Path) -> tuple[ServiceSpec, str]:
    """:func:`load_spec`, and the text the spec was parsed from (what the configuration
    history records: exactly the version that was checked)."""
    from bastion._text import read_text

    text = read_text(path, ServiceSpecError, "service spec", private=True)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ServiceSpecError(
            f"{path}: not valid TOML: {err}",
            hint="Fix the syntax at the named position, or go back to a recorded version "
            f"(`bastion config history --service {path.stem}`, then `bastion config rollback "
            "ID`).",
            file=str(path),
        ) from err
    return parse_spec(path.stem, data, source=str(path)), text


def spec_files(directory: Path) -> list[Path]:
    """The spec files of a services folder: ``*.toml``, hidden files left out (an editor's
    lock or backup such as ``.#name.toml`` is not a service)."""
    if not directory.is_dir():
        return []
    try:
        entries = list(directory.iterdir())
    except OSError as err:
        # glob() hides this: a folder this process may not read listed as empty, so
        # `services validate` said "no service files" and a reload stopped every service.
        raise ServiceSpecError(
            f"cannot list the services folder {directory}: {err.strerror or err}",
            hint=f"Let the user bastion runs as read it: `chmod 700 {directory}` (and `chown` "
            "it to that user).",
            file=str(directory),
        ) from None
    return sorted(p for p in entries if p.suffix == ".toml" and not p.name.startswith("."))


def load_specs(directory: Path) -> list[ServiceSpec]:
    """Every spec in ``directory``; the first invalid file raises (nothing starts)."""
    return [load_spec(path) for path in spec_files(directory)]


def validate_dir(directory: Path) -> tuple[list[ServiceSpec], list[ServiceSpecError]]:
    """Check every file; return the valid specs and one error per invalid file."""
    good: list[ServiceSpec] = []
    bad: list[ServiceSpecError] = []
    for path in spec_files(directory):
        try:
            good.append(load_spec(path))
        except ServiceSpecError as err:
            bad.append(err)
    return good, bad
