"""Does a value look like a credential? The one test every plain table applies before a write.

Settings (``bastion.db``) and service specs' ``env`` tables are stored and shown in plain text,
copied into backups and bug reports. A credential belongs in the vault, with a reference
(``secret:scope/name``) where it is used. :func:`find_credential` says why a value looks like
one -- never what it is -- so the refusal can name the key and the rule:

- a known key format, anywhere in the text: OpenAI/Anthropic ``sk-``, Stripe ``sk_live_``,
  GitHub ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``/``github_pat_``, GitLab ``glpat-``,
  Slack ``xox?-``/``xapp-``, AWS ``AKIA``/``ASIA`` key ids, Google ``AIza``, Hugging Face
  ``hf_``, npm ``npm_``, PyPI ``pypi-`` (each with the length of a real key after it, so
  ``sk-SE`` or ``hf_model`` pass);
- a JSON Web Token (``eyJ…`` ``.`` ``eyJ…`` ``.`` …);
- a PEM private key block (certificates and public keys are not secret and pass);
- a URL with a password (``amqp://user:pass@host``);
- under a key named like a secret (a ``token``, ``secret``, ``password``, ``passphrase``,
  ``credential`` part, or ``api``/``private``/``access``/... followed by ``key``), a string
  that looks random: 8+ characters, no spaces, three kinds of character (lower, upper, digit,
  symbol; two from 16 characters on) and a Shannon entropy near that of random text of its
  length. Words (``keychain``, ``X-Api-Key``), numbers, references, paths, e-mail addresses
  and URLs without a password pass, so ``auth.token_ttl = "3600"`` or ``secret_backend =
  "keychain"`` are not refused.

Why our own rules rather than a scanner such as detect-secrets: those scan source files line
by line through a process-wide plugin registry (a module singleton), judge a line's syntax
(``key = "value"``) rather than a (key, value) pair, and flag any long base64 or hex string
whatever it is for; what a settings write needs is this short list, applied to one value
and its key, in microseconds, with no dependency.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

from bastion.errors import PlaintextCredential

__all__ = [
    "KNOWN_PREFIXES",
    "URL_WITH_PASSWORD",
    "find_credential",
    "refuse_setting",
    "secret_name_for",
    "sensitive_key",
]

#: Prefixes of well-known key formats (the vault importer uses them too).
KNOWN_PREFIXES = (
    "sk-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxr-",
    "xoxs-",
    "xapp-",
    "AIza",
    "AKIA",
    "ASIA",
    "hf_",
    "npm_",
    "pypi-",
    "-----BEGIN",
)

_NOT_KEY_CHAR = r"(?<![A-Za-z0-9_\-])"
#: (what it is, pattern). Each asks for the body length of a real key after its prefix.
_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (what, re.compile(_NOT_KEY_CHAR + pattern))
    for what, pattern in (
        ("an API key in the sk- format (OpenAI, Anthropic, ...)", r"sk-[A-Za-z0-9_\-]{20,}"),
        ("a Stripe secret key", r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}"),
        ("a GitHub token", r"gh[pousr]_[A-Za-z0-9]{30,}"),
        ("a GitHub fine-grained token", r"github_pat_[A-Za-z0-9_]{30,}"),
        ("a GitLab token", r"glpat-[A-Za-z0-9_\-]{20,}"),
        ("a Slack token", r"xox[abposr]-[A-Za-z0-9\-]{10,}"),
        ("a Slack app token", r"xapp-[A-Za-z0-9\-]{10,}"),
        ("an AWS access key id", r"(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])"),
        ("a Google API key", r"AIza[A-Za-z0-9_\-]{35}"),
        ("a Hugging Face token", r"hf_[A-Za-z0-9]{30,}"),
        ("an npm token", r"npm_[A-Za-z0-9]{36}"),
        ("a PyPI token", r"pypi-[A-Za-z0-9_\-]{50,}"),
        ("a JSON Web Token", r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
    )
)
_PEM_PRIVATE = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----")
#: ``scheme://user:password@`` (the importer uses it too). The scheme is bounded: with
#: ``[a-z0-9+.-]*`` every position of a long run of letters rescanned the run for ``://``,
#: so a 1 MiB setting of letters held a thread for minutes; a longer scheme still matches
#: by its last 32 characters.
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.\-]{0,31}://[^/@:\s]+:[^/@\s]+@", re.IGNORECASE)

_SECRET_WORDS = frozenset(
    {
        "token",
        "tokens",
        "secret",
        "secrets",
        "password",
        "passwords",
        "passwd",
        "pwd",
        "passphrase",
        "credential",
        "credentials",
        "apikey",
        "bearer",
    }
)
#: ``<word> key`` pairs that name a secret (``api_key``, ``apiKey``, ``PRIVATE_KEY``).
_KEY_QUALIFIERS = frozenset(
    {"api", "private", "access", "secret", "signing", "encryption", "master", "session", "auth"}
)
_KEY_PARTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_REFERENCE = "secret:"
_NUMBER = re.compile(r"[+-]?\d+(?:[.,]\d+)*")
_SEPARATORS = re.compile(r"[-_.:]")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")


def sensitive_key(key: str) -> bool:
    """Whether a key (``openai.api_key``, ``GITHUB_TOKEN``, ``db.password``) names a secret."""
    parts = [p.lower() for p in _KEY_PARTS.findall(key)]
    if any(p in _SECRET_WORDS for p in parts):
        return True
    return any(a in _KEY_QUALIFIERS and b == "key" for a, b in itertools.pairwise(parts))


def _entropy(text: str) -> float:
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def _looks_random(text: str) -> bool:
    if len(text) < 8 or any(c.isspace() for c in text) or text.startswith(_REFERENCE):
        return False
    if _NUMBER.fullmatch(text) or _EMAIL.fullmatch(text) or "://" in text:
        return False
    if text.startswith(("/", "./", "../", "~/")):
        return False
    if all(part.isalpha() for part in _SEPARATORS.split(text) if part):
        return False  # words joined by - _ . : (a header name, a mode): not random
    kinds = (
        any(c.islower() for c in text)
        + any(c.isupper() for c in text)
        + any(c.isdigit() for c in text)
        + any(not c.isalnum() for c in text)
    )
    # Short values need three kinds of character ("argon2id" is an algorithm's name, "P@ssw0rd"
    # a password); from 16 characters two will do (hex and base64 keys). Random text of n
    # distinct-ish characters has an entropy near log2(n) bits per character (at most ~6
    # for base64); words and repeated patterns stay well below.
    enough_kinds = kinds >= 3 or (kinds >= 2 and len(text) >= 16)
    return enough_kinds and _entropy(text) >= min(3.5, math.log2(len(text)) - 0.5)


def _why(key: str, text: str) -> str | None:
    if text.startswith(_REFERENCE):
        return None
    for what, pattern in _FORMATS:
        if pattern.search(text):
            return what
    if _PEM_PRIVATE.search(text):
        return "a PEM private key"
    if "://" in text and URL_WITH_PASSWORD.search(text):
        return "a URL with a password in it"
    if sensitive_key(key) and _looks_random(text.strip()):
        return "a random-looking value under a key named like a secret"
    return None


def _strings(key: str, value: Any) -> Iterator[tuple[str, str]]:
    """Every string inside a JSON value, with the dotted path that leads to it. Iterative,
    so a deeply nested value cannot exhaust the stack."""
    stack: list[tuple[str, Any]] = [(key, value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, str):
            yield path, node
        elif isinstance(node, dict):
            stack.extend((f"{path}.{k}" if path else str(k), v) for k, v in node.items())
            # A credential can sit in a key, too ({"sk-...": true}).
            stack.extend((path, k) for k in node if isinstance(k, str))
        elif isinstance(node, list | tuple):
            stack.extend((path, v) for v in node)


def find_credential(key: str, value: Any) -> tuple[str, str] | None:
    """``(where, why)`` for the first string in ``value`` that looks like a credential,
    ``where`` being the dotted path under ``key``; None if none does. Never the value."""
    for path, text in _strings(key, value):
        why = _why(path, text)
        if why is not None:
            return path, why
    return None


def secret_name_for(key: str) -> str:
    """A vault name to suggest for what ``key`` held (``openai.api_key`` stays as it is)."""
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "_", key).strip("_.-")
    return name or "my-secret"


def refuse_setting(key: str, value: Any) -> None:
    """Raise :class:`PlaintextCredential` if the setting ``key: value`` looks like one."""
    found = find_credential(key, value)
    if found is None:
        return
    where, why = found
    name = secret_name_for(where)
    raise PlaintextCredential(
        f"setting {key!r}: {'the value' if where == key else where} looks like {why}; "
        "settings are plain text (bastion.db, its backups, `settings list`), so it was not stored",
        hint=(
            f"Put it in the vault with `bastion secrets set {name} --prompt` and store the "
            f'reference "secret:global/{name}" in the setting instead (resolve it with '
            "Vault.resolve). If it is not a secret, repeat with --allow-plaintext "
            "(API: allow_plaintext; library: allow_plaintext=True)."
        ),
        key=key,
        path=where,
        rule=why,
    )
