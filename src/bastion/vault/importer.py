"""Import and scrub of plaintext secrets: ``.env`` files, MCP client configs, JSON app configs.

For each secret-looking value: store it in the vault, then rewrite the file atomically with a
reference (``secret:scope/name``) in its place, keeping the file's formatting as far as the
format allows (``.env``: every other byte of the line; JSON: key order and indentation). The
original is kept beside the file as a 0600 backup -- a plaintext copy, recorded so that
``bastion doctor`` lists it until ``secrets import --purge-backups`` deletes it, or not made
at all with ``backup=False`` (:mod:`~bastion.vault.plaintext_backups`). The order makes it
crash-safe and idempotent: values go to the vault first (unchanged values are not written
again), the file is replaced in one rename last; a second run finds only references and
changes nothing.

What looks secret (:func:`looks_secret`): a name such as ``*_API_KEY``/``token``/``password``,
a known key prefix (``sk-``, ``ghp_``, ``xoxb-``, ``AIza``, ...), a URL with a password, or a
long high-entropy string. In MCP configs (``mcpServers.<name>.env``) and ``.env`` files the
same test applies to each variable.

:func:`migrate_bundle` is the library form for app code: seed 002's bundled ``secrets`` object
becomes one record per key, losslessly and resumably (an interrupted run, re-run, ends with
every key present exactly once). Values are never logged, returned or put in errors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bastion._credentials import KNOWN_PREFIXES, URL_WITH_PASSWORD
from bastion._fs import atomic_write
from bastion.errors import ImportFailed, RuleViolation
from bastion.vault.audit import Operation
from bastion.vault.index import case_twin_error
from bastion.vault.plaintext_backups import write_backup
from bastion.vault.rules import validate_name, validate_scope
from bastion.vault.secret import REFERENCE_PREFIX, format_reference

if TYPE_CHECKING:
    from bastion.vault import Vault

__all__ = [
    "EnvEntry",
    "ImportItem",
    "ImportReport",
    "detect_format",
    "import_file",
    "looks_secret",
    "migrate_bundle",
    "migrate_bundled_json",
    "parse_env",
]

Format = Literal["env", "mcp", "json"]

_SECRET_NAME = re.compile(
    r"(?i)(api[_\-.]?key|apikey|secret|token|passw(or)?d|passwd|\bpwd\b|credential|"
    r"private[_\-.]?key|access[_\-.]?key|auth[_\-.]?key|client[_\-.]?secret|webhook|"
    r"\bdsn\b|conn(ection)?[_\-.]?str(ing)?|session[_\-.]?key|signing[_\-.]?key)"
)
_FLAG = re.compile(r"(?i)^(true|false|yes|no|on|off|null|none|enabled|disabled)$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def _entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_secret(key: str, value: object) -> bool:
    """Whether ``key: value`` from a config looks like a secret worth moving to the vault."""
    if not isinstance(value, str) or not value.strip() or value.startswith(REFERENCE_PREFIX):
        return False
    text = value.strip()
    if _FLAG.match(text):  # AUTH_TOKEN_ENABLED=true is a switch, not a token
        return False
    if text.startswith(KNOWN_PREFIXES) or URL_WITH_PASSWORD.match(text):
        return True
    if _SECRET_NAME.search(key):
        return True  # numbers too: SMTP_PASSWORD=123456 is still a password
    if _NUMBER.match(text):
        return False
    # A long token without spaces made of many distinct characters: an unnamed key.
    return (
        len(text) >= 24
        and " " not in text
        and "/" not in text.split("?")[0][8:]
        and _entropy(text) >= 4.0
        and any(c.isdigit() for c in text)
        and any(c.isalpha() for c in text)
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ImportItem:
    """One value found in the file. ``action``: set, unchanged (already in the vault with the
    same value), reference (already scrubbed), would-set (dry run)."""

    location: str
    scope: str
    name: str
    action: str


@dataclasses.dataclass(frozen=True, slots=True)
class ImportReport:
    """What an import moved (or would move) into the vault, and the backup of the original."""

    file: str
    format: str
    items: tuple[ImportItem, ...]
    rewritten: bool
    #: The 0600 copy of the original file, which holds the plaintext values (None: none made).
    backup: str | None
    dry_run: bool
    #: Said when a plaintext copy was kept: where it is and how to delete it.
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (names and locations, never values)."""
        return dataclasses.asdict(self)


def detect_format(path: Path, text: str) -> Format:
    """The file's format: ``env``, ``mcp`` (``mcpServers``) or ``json``."""
    if path.name == ".env" or path.suffix == ".env" or path.name.startswith(".env"):
        return "env"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
            # Read as .env lines it held no KEY=value: "nothing to import", exit 0, and the
            # plaintext stayed (a trailing comma or a comment, as editors' JSONC allows).
            # err.msg and the position only: never the text around it (a value).
            raise ImportFailed(
                f"{path} is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno}); "
                "nothing was imported",
                hint="Fix it there (a trailing comma? a comment? JSON allows neither) and "
                "run the import again.",
                path=str(path),
            ) from None
        return "env"
    if isinstance(data, dict) and (
        isinstance(data.get("mcpServers"), dict) or isinstance(data.get("servers"), dict)
    ):
        return "mcp"
    return "json"


def _safe_name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("._-") or "secret"
    return cleaned[:128]


# --- .env ------------------------------------------------------------------------------------

_ENV_LINE = re.compile(
    r"^(?P<lead>\s*(?:export\s+)?)(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)(?P<eq>\s*=\s*)(?P<rest>.*)$"
)


@dataclasses.dataclass(frozen=True, slots=True)
class EnvEntry:
    """One ``KEY=value`` line of a .env file, with what surrounds the value kept verbatim."""

    line: int
    key: str
    value: str
    prefix: str  # everything before the value (kept verbatim)
    quote: str  # '', "'" or '"'
    suffix: str  # everything after the value (closing quote, comment, line end)


def parse_env(text: str) -> list[EnvEntry]:
    """Entries of a ``.env`` file, with what surrounds each value so it can be put back."""
    entries = []
    for number, line in enumerate(_lines(text)):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        match = _ENV_LINE.match(body)
        if match is None or body.lstrip().startswith("#"):
            continue
        prefix = match["lead"] + match["key"] + match["eq"]
        rest = match["rest"]
        if rest[:1] in ("'", '"'):
            quote = rest[0]
            close = _closing_quote(rest, quote)
            if close < 0:
                continue  # an unterminated (multi-line) value: left as it is
            raw = rest[1:close]
            value = _unescape(raw) if quote == '"' else raw
            entries.append(
                EnvEntry(number, match["key"], value, prefix + quote, quote, rest[close:] + ending)
            )
        else:
            value, comment = rest, ""
            hash_at = re.search(r"\s+#", rest)
            if hash_at:
                value, comment = rest[: hash_at.start()], rest[hash_at.start() :]
            stripped = value.rstrip()
            comment = value[len(stripped) :] + comment
            entries.append(EnvEntry(number, match["key"], stripped, prefix, "", comment + ending))
    return entries


def _lines(text: str) -> list[str]:
    """Lines split at ``\n`` only (``str.splitlines`` also splits at form feeds and the like,
    which a value may contain), each with its ending."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def _closing_quote(rest: str, quote: str) -> int:
    i = 1
    while i < len(rest):
        if rest[i] == "\\" and quote == '"':
            i += 2
            continue
        if rest[i] == quote:
            return i
        i += 1
    return -1


def _unescape(raw: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), raw)


# --- JSON ------------------------------------------------------------------------------------


def _json_indent(text: str) -> int | str | None:
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and len(stripped) < len(line):
            lead = line[: len(line) - len(stripped)]
            return "\t" if lead.startswith("\t") else len(lead)
    return None if "\n" not in text.strip() else 2


def _walk_json(node: Any, path: tuple[str, ...], out: list[tuple[tuple[str, ...], str]]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _walk_json(value, (*path, str(key)), out)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _walk_json(value, (*path, str(index)), out)
    elif isinstance(node, str) and path:
        out.append((path, node))


def _set_path(node: Any, path: tuple[str, ...], value: str) -> None:
    for part in path[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(path[-1])] = value
    else:
        node[path[-1]] = value


def _json_candidates(data: Any, fmt: Format) -> list[tuple[tuple[str, ...], str, str]]:
    """(path, name, value) of the secret-looking strings; MCP: only servers' env blocks."""
    found: list[tuple[tuple[str, ...], str]] = []
    if fmt == "mcp":
        root_key = "mcpServers" if isinstance(data.get("mcpServers"), dict) else "servers"
        for server, spec in data[root_key].items():
            env = spec.get("env") if isinstance(spec, dict) else None
            if isinstance(env, dict):
                for key, value in env.items():
                    if isinstance(value, str):
                        found.append(((root_key, server, "env", key), value))
        return [(p, _safe_name(f"{p[1]}.{p[3]}"), v) for p, v in found if looks_secret(p[-1], v)]
    _walk_json(data, (), found)
    return [(p, _safe_name(".".join(p)), v) for p, v in found if looks_secret(p[-1], v)]


# --- import ----------------------------------------------------------------------------------


def _check_writable(file: Path) -> None:
    """``ImportFailed`` before anything is stored when ``file``'s folder cannot take the
    rewritten file and its backup (read-only media, a folder this process may not write):
    the import would store the values, then fail with the plaintext still in the file."""
    folder = file.absolute().parent
    if os.access(folder, os.W_OK):
        return
    import errno

    from bastion import _platform

    try:
        read_only = _platform.read_only_mount(folder)
    except OSError:
        read_only = False
    why = "it is on a read-only file system" if read_only else "this process may not write there"
    raise ImportFailed(
        f"{file}: cannot rewrite it in {folder} ({why}); nothing was imported",
        hint="Import a copy from a folder you can write (the values move there), or make "
        "this one writable; the file was left as it was.",
        path=str(file),
        errno=errno.EROFS if read_only else errno.EACCES,
    )


def _read(file: Path) -> tuple[bytes, str]:
    """The file's bytes (kept as the backup, exactly) and its UTF-8 text (a byte-order mark
    dropped: glued to the first key it would hide that secret from the import)."""
    from bastion._text import decode_utf8, read_bytes

    raw = read_bytes(file, ImportFailed, "import file")
    return raw, decode_utf8(raw, file, ImportFailed, "import file")


def import_file(
    vault: Vault,
    path: str | os.PathLike[str],
    *,
    scope: str = "global",
    dry_run: bool = False,
    actor: str = "import",
    names: Mapping[str, str] | None = None,
    backup: bool = True,
) -> ImportReport:
    """Move the plaintext secrets of ``path`` into ``vault`` and scrub the file.

    ``names`` (JSON path ``a.b.c`` or .env key -> secret name) picks exactly which entries to
    import and under which names (seed 001's auto-migration of its known fields); without it,
    :func:`looks_secret` decides and names are derived from the keys. With ``backup`` (the
    default) the original is kept beside the file, 0600, and recorded
    (:mod:`~bastion.vault.plaintext_backups`); the report's ``warning`` says where.
    """
    validate_scope(scope)
    file = Path(path)
    raw, text = _read(file)
    fmt = detect_format(file, text)
    if fmt == "env":
        entries = parse_env(text)
        picks: list[tuple[Any, str, str, str]] = []  # (handle, location, name, value)
        for entry in entries:
            if names is not None:
                if entry.key in names and not entry.value.startswith(REFERENCE_PREFIX):
                    picks.append((entry, entry.key, names[entry.key], entry.value))
            elif looks_secret(entry.key, entry.value):
                picks.append((entry, entry.key, _safe_name(entry.key), entry.value))
        refs = [e.key for e in entries if e.value.startswith(REFERENCE_PREFIX)]
        data: Any = None
    else:
        data = json.loads(text)
        candidates = _json_candidates(data, fmt)
        if names is not None:
            flat: list[tuple[tuple[str, ...], str]] = []
            _walk_json(data, (), flat)
            candidates = [
                (p, names[".".join(p)], v)
                for p, v in flat
                if ".".join(p) in names and not v.startswith(REFERENCE_PREFIX)
            ]
        picks = [(p, ".".join(p), n, v) for p, n, v in candidates]
        flat_all: list[tuple[tuple[str, ...], str]] = []
        _walk_json(data, (), flat_all)
        refs = [".".join(p) for p, v in flat_all if v.startswith(REFERENCE_PREFIX)]

    # Validate everything before storing anything: a refused value leaves no partial import.
    for _, location, name, value in picks:
        try:
            validate_name(name)
            vault.rules.check(scope, name, value)
        except (ValueError, RuleViolation) as err:
            raise ImportFailed(
                f"{file}: {location} cannot be imported: {err}", path=str(file), location=location
            ) from err
    _refuse_case_twins(vault, scope, [(loc, name) for _, loc, name, _ in picks], where=f"{file}: ")

    items = [ImportItem(loc, scope, loc, "reference") for loc in refs]
    if dry_run:
        items += [ImportItem(loc, scope, name, "would-set") for _, loc, name, _ in picks]
        return ImportReport(str(file), fmt, tuple(items), False, None, True)

    if picks:
        _check_writable(file)
    for _, location, name, value in picks:
        _, changed = vault.set_if_changed(
            name, value, scope, actor=actor, operation=Operation.IMPORT
        )
        items.append(ImportItem(location, scope, name, "set" if changed else "unchanged"))
    if not picks:
        return ImportReport(str(file), fmt, tuple(items), False, None, False)

    if fmt == "env":
        lines = _lines(text)
        for entry, _, name, _ in picks:
            lines[entry.line] = entry.prefix + format_reference(scope, name) + entry.suffix
        new_text = "".join(lines)
    else:
        for json_path, _, name, _ in picks:
            _set_path(data, json_path, format_reference(scope, name))
        new_text = json.dumps(data, indent=_json_indent(text), ensure_ascii=False)
        if text.endswith("\n"):
            new_text += "\n"
    try:
        copy = write_backup(vault, file, raw, actor=actor) if backup else None
        mode = file.stat().st_mode & 0o777
        atomic_write(file, new_text, mode=mode)
    except OSError as err:
        # Past the check above (a disk that filled, a mount made read-only meanwhile): the
        # values are in the vault, the file is as it was; a rerun finds them unchanged.
        raise ImportFailed(
            f"{file}: the values are in the vault, but the file could not be rewritten: "
            f"{err.strerror or err}",
            hint="Fix the named problem and run the import again: it finds the values "
            "stored and rewrites the file.",
            path=str(file),
        ) from err
    return ImportReport(
        str(file), fmt, tuple(items), True, str(copy) if copy else None, False, _warning(copy)
    )


def _refuse_case_twins(
    vault: Vault, scope: str, picks: list[tuple[str, str]], *, where: str = ""
) -> None:
    """``ImportFailed`` before anything is stored when two of ``picks`` (location, name) differ
    only in case, or one does from a secret already in ``scope``: the vault would refuse the
    second write (:meth:`bastion.vault.index.Index.case_twin`), halfway through the import."""
    seen: dict[str, tuple[str, str]] = {}
    for location, name in picks:
        # Names and scopes are ASCII (validate_name): lower() folds as SQLite's NOCASE does.
        first = seen.setdefault(name.lower(), (location, name))
        if first[1] != name:
            raise ImportFailed(
                f"{where}{first[0]} and {location} differ only in case ({first[1]}, {name}): "
                "secret names are compared without case, so they cannot both be imported",
                hint="Keep one of the two (or give them different names), then import again.",
                location=location,
            )
        twin = vault.index.case_twin(scope, name)
        if twin is not None:
            error = case_twin_error(scope, name, twin)
            raise ImportFailed(
                f"{where}{location}: {error.message}", hint=error.hint, location=location
            )


def _warning(copy: Path | None) -> str | None:
    if copy is None:
        return None
    return (
        f"{copy} holds the plaintext values this import moved to the vault (0600, kept "
        "until deleted); check the import, then delete it with `bastion secrets import "
        "--purge-backups`"
    )


# --- bundled -> per record -------------------------------------------------------------------


def migrate_bundle(
    vault: Vault,
    bundle: Mapping[str, str],
    *,
    scope: str,
    actor: str = "migrate",
    name_for: Callable[[str], str] = _safe_name,
    on_complete: Callable[[], None] | None = None,
    on_key: Callable[[str, bool], None] | None = None,
) -> dict[str, int]:
    """Store each key of a bundled secrets object as its own record in ``scope``.

    Lossless and resumable: each key is written on its own (one record per (scope, name));
    a key already stored with the same value is skipped, so re-running an interrupted
    migration writes only what is missing and never a key twice. ``on_complete`` (e.g. clear
    the bundle in the app's store) runs only once every key is stored. ``on_key(name,
    written)`` is called after each key is durable (progress, or a crash test's kill point);
    keys go in sorted order, so an interrupted run and its re-run walk them the same way.
    """
    validate_scope(scope)
    planned = {name_for(key): value for key, value in bundle.items()}
    if len(planned) != len(bundle):
        raise ImportFailed(
            "two bundle keys map to the same secret name; pass name_for to keep them apart"
        )
    for name, value in planned.items():
        validate_name(name)
        vault.rules.check(scope, name, value)
    _refuse_case_twins(vault, scope, [(f"key {k!r}", name_for(k)) for k in bundle])
    written = unchanged = 0
    for name, value in sorted(planned.items()):
        _, changed = vault.set_if_changed(
            name, value, scope, actor=actor, operation=Operation.MIGRATE
        )
        written += changed
        unchanged += not changed
        if on_key is not None:
            on_key(name, changed)
    if on_complete is not None:
        on_complete()
    return {"keys": len(planned), "written": written, "unchanged": unchanged}


def migrate_bundled_json(
    vault: Vault,
    path: str | os.PathLike[str],
    *,
    scope: str,
    key: str = "secrets",
    actor: str = "migrate",
    backup: bool = True,
) -> dict[str, int]:
    """Seed 002's shape: a JSON record with a bundled ``secrets`` object. Moves every key to
    its own vault record, then removes the bundle from the file (with ``backup``, a recorded
    0600 copy of the original is kept: see :mod:`~bastion.vault.plaintext_backups`)."""
    file = Path(path)
    raw, text = _read(file)
    data = json.loads(text)
    bundle = data.get(key) if isinstance(data, dict) else None
    if not bundle:
        return {"keys": 0, "written": 0, "unchanged": 0}
    if not isinstance(bundle, dict) or not all(isinstance(v, str) for v in bundle.values()):
        raise ImportFailed(f"{file}: {key!r} is not an object of strings", path=str(file))

    def clear() -> None:
        del data[key]
        new_text = json.dumps(data, indent=_json_indent(text), ensure_ascii=False)
        if backup:
            write_backup(vault, file, raw, actor=actor)
        atomic_write(file, new_text + ("\n" if text.endswith("\n") else ""), mode=0o600)

    return migrate_bundle(vault, bundle, scope=scope, actor=actor, on_complete=clear)
