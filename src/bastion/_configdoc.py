"""What ``bastion config show`` and ``docs/config.md`` say about the configuration: every key
with its value and where the value came from (:func:`explain_config`), and the reference page
(:func:`render_config_markdown`). :mod:`bastion.config` re-exports these names.

Apart from :mod:`bastion.config` because every command loads that module (``bastion settings
get`` too, in a fresh interpreter per scripted read: issue 7), and only these two need the
``ConfigEntry`` class and the source-reading helpers.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from typing import Any, Literal

from bastion.config import _SECTIONS, CONFIG_FILE, Config, _load, env_name

__all__ = ["ConfigEntry", "explain_config", "render_config_markdown"]


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One key of the effective configuration: its value and where the value came from
    (``default``, ``bastion.toml``, ``env BASTION_…`` or ``overrides``)."""

    section: str
    key: str
    value: Any
    default: Any
    source: str
    env: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists."""
        return {
            "section": self.section,
            "key": self.key,
            "value": list(self.value) if isinstance(self.value, tuple) else self.value,
            "default": list(self.default) if isinstance(self.default, tuple) else self.default,
            "source": self.source,
            "env": self.env,
        }


def explain_config(
    home: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> tuple[Config, list[ConfigEntry]]:
    """The config ``load_config`` would return, and every key of it with where its value
    came from: what ``bastion config show`` prints."""
    config, sources = _load(home, env, overrides)
    entries = []
    for section, cls in _SECTIONS.items():
        values = getattr(config, section)
        for f in dataclasses.fields(cls):
            where = sources[section].get(f.name)
            if where is None:
                source = "default"
            elif where.startswith("environment variable "):
                source = "env " + where.removeprefix("environment variable ")
            elif where.startswith("overrides"):
                source = "overrides"
            else:
                source = CONFIG_FILE
            entries.append(
                ConfigEntry(
                    section,
                    f.name,
                    getattr(values, f.name),
                    _default_of(f),
                    source,
                    env_name(section, f.name),
                )
            )
    return config, entries


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None  # pragma: no cover - every config field has a default


def _field_docs(cls: type[Any]) -> dict[str, str]:
    """``#:`` comments above each field, read from the source (for docs/config.md)."""
    import inspect

    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines():
        text = line.strip()
        if text.startswith("#:"):
            pending.append(text[2:].strip())
            continue
        name = text.partition(":")[0]
        if pending and name.isidentifier():
            docs[name] = " ".join(pending)
        pending = []
    return docs


def _type_text(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f'`"{c}"`' for c in typing.get_args(annotation))
    if origin is tuple:
        args = typing.get_args(annotation)
        return "list of integers" if args and args[0] is int else "list of strings"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(
        annotation, str(annotation)
    )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value) if isinstance(value, float) else str(value)


def render_config_markdown() -> str:
    """The text of ``docs/config.md``; a test fails when the committed file differs."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from src/bastion/config.py by `python -m bastion._docs`; do not edit. -->",
        "",
        "bastion reads, lowest precedence first: the defaults below, `<home>/bastion.toml`,",
        "`BASTION_<SECTION>_<KEY>` environment variables, and in a Python app the `overrides`",
        "given to `load_config`. `bastion config show` prints the effective value of every key",
        "and where it came from; `bastion config path` prints the file's path. Every value is",
        "checked: a wrong one is a `ConfigError` naming the key, the problem and the accepted form.",
        "",
        "The home itself comes from `--home`, else `BASTION_HOME`, else the platform's data",
        "directory. In the environment, lists are comma-separated and booleans are",
        "`true`/`false` (or `1`/`0`, `yes`/`no`, `on`/`off`).",
        "",
        "```toml",
        "# bastion.toml: a home without an OS keychain",
        "[vault]",
        'backend = "encrypted-file"   # key from BASTION_VAULT_KEY (`bastion secrets keygen`)',
        "",
        "[retention]",
        "logs_days = 7",
        "```",
        "",
        "```python",
        "from bastion.config import load_config",
        "",
        'cfg = load_config("/path/to/home", overrides={"vault": {"backend": "encrypted-file"}})',
        "```",
        "",
    ]
    for section, cls in _SECTIONS.items():
        hints = typing.get_type_hints(cls)
        docs = _field_docs(cls)
        summary = (cls.__doc__ or "").partition(": ")[2]
        lines += [f"## `[{section}]`", "", summary[:1].upper() + summary[1:], ""]
        lines += ["| key | type | default | environment | what it does |", "|---|---|---|---|---|"]
        for f in dataclasses.fields(cls):
            bounds = ""
            lo, hi = f.metadata.get("min"), f.metadata.get("max")
            if lo is not None or hi is not None:
                bounds = f" ({lo if lo is not None else '…'} to {hi if hi is not None else '…'})"
            what = docs.get(f.name, "").replace("``", "`").replace("|", r"\|")
            lines.append(
                f"| `{f.name}` | {_type_text(hints[f.name])}{bounds} | "
                f"`{_toml_value(_default_of(f))}` | `{env_name(section, f.name)}` | {what} |"
            )
        lines.append("")
    return "\n".join(lines)
