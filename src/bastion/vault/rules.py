"""Validation of secret names, scopes and values: the per-name rules.

A rule is a small frozen dataclass with a stable ``name`` and a ``check(value)`` that returns
``None`` or the reason the value is refused. :class:`Rules` maps secret names to their rules
(declared in config as ``"NAME=rule[:argument]"`` or in code with :meth:`Rules.add`) and raises
:class:`~bastion.errors.RuleViolation` naming the rule -- never echoing the value -- before
anything is stored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol
from urllib.parse import urlsplit

from bastion.errors import InvalidName, RuleViolation

__all__ = [
    "LOCAL_HOSTS",
    "AmqpUrl",
    "Custom",
    "HttpsUrl",
    "MaxLength",
    "NonEmpty",
    "Regex",
    "Rule",
    "Rules",
    "parse_rule",
    "require_utf8",
    "validate_name",
    "validate_scope",
    "validate_value",
]

NAME_MAX = 128
SCOPE_MAX = 128
#: Hard cap on any value: a vault holds keys and URLs, not files.
VALUE_MAX = 64 * 1024
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
# Scopes: "global", "bot:42", "space:abc-1"; no "/" (references are "secret:scope/name").
_SCOPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]*\Z")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class Rule(Protocol):
    """A value rule: a name and a check that says why a value is refused."""

    @property
    def name(self) -> str:
        """The rule's name, as ``RuleViolation`` reports it."""

    def check(self, value: str) -> str | None:
        """``None`` if ``value`` passes, else why not (never containing the value)."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class NonEmpty:
    """Rule ``non_empty``: not empty and not only whitespace."""

    name: str = "non_empty"

    def check(self, value: str) -> str | None:
        """None if the value has a non-space character, else why not."""
        return "the value is empty or only whitespace" if not value.strip() else None


@dataclasses.dataclass(frozen=True, slots=True)
class MaxLength:
    """Rule ``max_length:N``: at most N characters."""

    limit: int
    name: str = "max_length"

    def check(self, value: str) -> str | None:
        """None if the value has at most ``limit`` characters, else why not."""
        if len(value) > self.limit:
            return f"the value has {len(value)} characters; at most {self.limit} are allowed"
        return None


def _is_local(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True, slots=True)
class HttpsUrl:
    """An ``https`` URL with a host; ``http`` only for localhost, 127.0.0.1 or ::1."""

    name: str = "https_url"

    def check(self, value: str) -> str | None:
        """None for an https URL with a host (http only for localhost), else why not."""
        try:
            parts = urlsplit(value.strip())
            host = parts.hostname or ""
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            return "the value is not a valid URL"
        if parts.scheme not in ("https", "http") or not host:
            return "the value must be an https:// URL with a host"
        if parts.scheme == "http" and not _is_local(host):
            return "http:// is allowed only for localhost, 127.0.0.1 or ::1; use https://"
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class AmqpUrl:
    """An ``amqp://`` or ``amqps://`` URL with a host."""

    name: str = "amqp_url"

    def check(self, value: str) -> str | None:
        """None for an ``amqp://``/``amqps://`` URL with a host, else why not."""
        try:
            parts = urlsplit(value.strip())
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            return "the value is not a valid URL"
        if parts.scheme not in ("amqp", "amqps"):
            return "the value must start with amqp:// or amqps://"
        if not host:
            return "the AMQP URL has no host"
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Regex:
    """Rule ``regex:PATTERN``: the whole value matches the pattern."""

    pattern: str
    name: str = "regex"

    def check(self, value: str) -> str | None:
        """None if the whole value matches ``pattern``, else why not."""
        if re.fullmatch(self.pattern, value) is None:
            return f"the value does not match the pattern {self.pattern!r}"
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class Custom:
    """A rule from code: ``fn(value)`` returns ``None`` or the reason (without the value)."""

    fn: Callable[[str], str | None]
    name: str = "custom"

    def check(self, value: str) -> str | None:
        """The custom function's verdict: None, or why the value is refused."""
        return self.fn(value)


def parse_rule(text: str) -> tuple[str, Rule]:
    """Parse ``"NAME=rule[:argument]"`` from config into ``(name, rule)``."""
    secret_name, sep, spec = text.partition("=")
    kind, _, arg = spec.partition(":")
    secret_name, kind = secret_name.strip(), kind.strip()
    if not sep or not secret_name or not kind:
        raise ValueError(f"vault rule {text!r} is not NAME=rule[:argument]")
    validate_name(secret_name)
    rule: Rule
    if kind == "non_empty":
        rule = NonEmpty()
    elif kind == "https_url":
        rule = HttpsUrl()
    elif kind == "amqp_url":
        rule = AmqpUrl()
    elif kind == "max_length":
        if not arg.strip().isdigit():
            raise ValueError(f"vault rule {text!r}: max_length needs a number, e.g. max_length:64")
        rule = MaxLength(int(arg))
    elif kind == "regex":
        try:
            re.compile(arg)
        except re.error as err:
            raise ValueError(f"vault rule {text!r}: bad regex: {err}") from err
        rule = Regex(arg)
    else:
        raise ValueError(
            f"vault rule {text!r}: unknown rule {kind!r} "
            "(known: non_empty, max_length, https_url, amqp_url, regex)"
        )
    return secret_name, rule


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid secret name, else raise ``InvalidName`` saying why."""
    if not isinstance(name, str) or not name:
        raise InvalidName("a secret name must be a non-empty string", kind="secret name")
    if len(name) > NAME_MAX:
        raise InvalidName(
            f"secret name is {len(name)} characters long; the limit is {NAME_MAX}",
            kind="secret name",
        )
    if not _NAME_RE.match(name):
        raise InvalidName(
            f"secret name {name!r} has characters outside A-Z a-z 0-9 _ . - "
            "(and must start with a letter or digit)",
            hint="Use e.g. OPENAI_API_KEY or stt.url.",
            kind="secret name",
        )
    return name


def validate_scope(scope: str) -> str:
    """Return ``scope`` if valid (``global``, ``bot:42``, ``space:abc``), else ``InvalidName``."""
    if not isinstance(scope, str) or not scope:
        raise InvalidName(
            "a scope must be a non-empty string such as 'global' or 'bot:42'", kind="scope"
        )
    if len(scope) > SCOPE_MAX or not _SCOPE_RE.match(scope):
        raise InvalidName(
            f"scope {scope!r} must be at most {SCOPE_MAX} characters of A-Z a-z 0-9 _ . : - "
            "(e.g. 'global', 'bot:42', 'space:abc')",
            hint="Use e.g. --scope global, --scope bot:42 or --scope space:abc.",
            kind="scope",
        )
    return scope


def require_utf8(value: str, what: str, *, name: str = "", scope: str = "") -> None:
    """``RuleViolation`` unless ``value`` is UTF-8 text. A lone surrogate is bytes that were
    not UTF-8, kept by surrogateescape (stdin, a file name) or sent as a JSON escape: nothing
    could store, fingerprint or inject it (UnicodeEncodeError deep in the vault)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RuleViolation(
            f"{what} is not UTF-8 text (character {err.start + 1} of {len(value)} is not a "
            "character: bytes in another encoding?)",
            hint="Secrets are text: give the value as UTF-8 (`iconv -f LATIN1 -t UTF-8` "
            "converts Latin-1 text).",
            rule="utf8",
            name=name,
            scope=scope,
        ) from None


def validate_value(scope: str, name: str, value: str) -> None:
    """The checks every value gets regardless of rules: a str of UTF-8 text, no NUL, at most
    VALUE_MAX characters."""
    if not isinstance(value, str):
        raise TypeError(f"a secret value must be a str, not {type(value).__name__}")
    if "\x00" in value:
        raise RuleViolation(
            f"{scope}/{name}: the value contains a NUL character",
            hint="Secrets are text (they end up in environment variables); remove the NUL.",
            rule="no_nul",
            name=name,
            scope=scope,
        )
    require_utf8(value, f"{scope}/{name}: the value", name=name, scope=scope)
    if len(value) > VALUE_MAX:
        raise RuleViolation(
            f"{scope}/{name}: the value has {len(value)} characters; the vault limit is "
            f"{VALUE_MAX}",
            hint="Store a smaller value; the vault holds keys and URLs, not files.",
            rule="vault_max",
            name=name,
            scope=scope,
        )


class Rules:
    """Rules per secret name (the same in every scope). Checked before anything is stored."""

    def __init__(self, rules: Mapping[str, Iterable[Rule]] | None = None) -> None:
        self._rules: dict[str, list[Rule]] = {}
        for secret_name, items in (rules or {}).items():
            for rule in items:
                self.add(secret_name, rule)

    @classmethod
    def from_config(cls, specs: Iterable[str]) -> Rules:
        """Rules from ``vault.rules`` entries (``NAME=rule[:argument]``)."""
        rules = cls()
        for spec in specs:
            rules.add(*parse_rule(spec))
        return rules

    def add(self, name: str, rule: Rule) -> None:
        """Apply ``rule`` to values of the secret ``name``."""
        self._rules.setdefault(validate_name(name), []).append(rule)

    def for_name(self, name: str) -> tuple[Rule, ...]:
        """The rules that apply to ``name``."""
        return tuple(self._rules.get(name, ()))

    def check(self, scope: str, name: str, value: str) -> None:
        """Raise ``RuleViolation`` naming the first rule ``value`` breaks; never shows it."""
        validate_value(scope, name, value)
        for rule in self._rules.get(name, ()):
            reason = rule.check(value)
            if reason is not None:
                raise RuleViolation(
                    f"{scope}/{name} refused by rule {rule.name}: {reason}",
                    hint=f"Nothing was stored. Supply a value that meets {rule.name}.",
                    rule=rule.name,
                    name=name,
                    scope=scope,
                )
