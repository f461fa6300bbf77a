"""The credential detector every plain table uses: what it refuses, and what it lets through."""

from __future__ import annotations

import base64
import json

import pytest

from bastion._credentials import find_credential, refuse_setting, sensitive_key
from bastion.errors import PlaintextCredential, StoreError

# Made-up values in the shape of each format (none is a real key).
OPENAI = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
ANTHROPIC = "sk-ant-api03-" + "x7Yh2Kq9Lm4Np8Rs3Tv6Wz1Bc5Df0Gj"
JWT = (
    ".".join(
        base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
        for part in ({"alg": "HS256", "typ": "JWT"}, {"sub": "1234567890", "name": "Ada"})
    )
    + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----"

FOUND = [
    ("openai.api_key", OPENAI, "sk- format"),
    ("llm.anthropic", ANTHROPIC, "sk- format"),
    ("github", "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "GitHub token"),
    ("github", "gho_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "GitHub token"),
    ("gh", "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "fine-grained"),
    ("slack.bot", "xoxb-" + "1234567890-0987654321-AbCdEfGhIjKl", "Slack token"),
    ("slack.user", "xoxp-" + "1234567890-0987654321-AbCdEfGhIjKl", "Slack token"),
    ("aws.key_id", "AKIA" + "IOSFODNN7EXAMPLE", "AWS access key id"),
    ("auth.session", JWT, "JSON Web Token"),
    ("tls.key", PEM, "PEM private key"),
    ("queue.url", "amqp://tray:s3cr3t-pass@localhost:5672/", "URL with a password"),
    ("db.password", "P@ssw0rd-2024!", "random-looking"),
    ("service.token", "4f9c2a7e1b3d8f0a6c5e9b2d7a1f3c8e", "random-looking"),
    ("OPENAI_API_KEY", "Zq8vN3pL6tR1xW4yB7cF0hJ2kM5sD9gA", "random-looking"),
    ("clientSecret", "a1B2-c3D4_e5F6.g7H8", "random-looking"),
    # Inside a larger value: a URL's query, a nested object, a list.
    ("webhook", f"https://api.example.com/v1?key={OPENAI}", "sk- format"),
    ("integrations", {"openai": {"api_key": OPENAI}}, "sk- format"),
    ("providers", [{"name": "x", "password": "Tr0ub4dor&3xyz"}], "random-looking"),
]

PASSES = [
    ("ui.theme", "dark"),
    ("retention.days", 30),
    ("speech.model", "whisper-large-v3"),
    ("tokenizer", "cl100k_base"),  # "token" is not a part of this key
    ("auth.token_ttl", "3600"),
    ("auth.token_type", "bearer"),
    ("vault.secret_backend", "keychain"),
    ("db.password_min_length", 12),
    ("api.token_url", "https://auth.example.com/oauth/token"),
    ("notify.password_reset_email", "admin@example.com"),
    ("tls.cert", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"),
    ("openai.api_key", "secret:global/openai"),  # a reference is what belongs here
    ("locale", "sk-SK"),  # Slovak, not a key
    ("model", "hf_transformers"),
    ("github.repo", "ghp_docs"),
    ("hash", "4f9c2a7e1b3d8f0a6c5e9b2d7a1f3c8e"),  # random, but not under a secret's name
    ("db.password", "correct horse battery staple"),  # words with spaces: not random-looking
    ("auth.password_hash", "argon2id"),  # a name, not a password
    ("api_key.header", "X-Api-Key"),
    ("secrets.backend", "encrypted-file"),
]


@pytest.mark.parametrize(("key", "value", "why"), FOUND)
def test_credentials_are_found_and_named_without_their_value(
    key: str, value: object, why: str
) -> None:
    found = find_credential(key, value)
    assert found is not None
    where, reason = found
    assert why in reason
    assert where.startswith(key)
    with pytest.raises(PlaintextCredential) as caught:
        refuse_setting(key, value)
    err = caught.value
    assert isinstance(err, StoreError)
    assert err.code == "plaintext_credential"
    assert "bastion secrets set" in err.hint
    assert '"secret:global/' in err.hint
    assert "--allow-plaintext" in err.hint
    text = json.dumps(value) if not isinstance(value, str) else value
    for piece in (text[i : i + 8] for i in range(0, max(1, len(text) - 8), 4)):
        if any(c.isdigit() for c in piece):  # a piece of the value itself, not its key
            assert piece not in err.message + err.hint + str(err.details)


@pytest.mark.parametrize(("key", "value"), PASSES)
def test_ordinary_settings_pass(key: str, value: object) -> None:
    assert find_credential(key, value) is None
    refuse_setting(key, value)


def test_key_names_are_split_into_words() -> None:
    for key in ("openai.api_key", "OPENAI_API_KEY", "apiKey", "db.password", "GH_TOKEN"):
        assert sensitive_key(key), key
    for key in ("tokenizer", "ui.hotkey", "sort.key", "passthrough", "keyboard.layout"):
        assert not sensitive_key(key), key


def test_a_deeply_nested_value_is_walked_without_recursion() -> None:
    value: object = OPENAI
    for _ in range(5000):
        value = [value]
    assert find_credential("deep", value) is not None


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "value",
    [
        "a" * (1 << 20),
        "a:" * (1 << 19),
        "x://" + "a:" * (1 << 18),
        "a@" + "a." * (1 << 18),
        "1," * (1 << 19),
        "sk-" * (1 << 18),
        "eyJ" * (1 << 18),
    ],
    ids=["letters", "colons", "scheme", "email", "numbers", "prefixes", "jwt-starts"],
)
def test_the_largest_setting_is_checked_in_linear_time(value: str) -> None:
    """A 1 MiB value (the settings size limit) of a pattern's worst case is checked in well
    under a second; a pattern that backtracks quadratically takes hours on these, and the
    timeout (a hang detector, not a stopwatch: 100x the linear time on a loaded machine)
    ends the test."""
    for key in ("ui.note", "service.api_key"):
        find_credential(key, value)
