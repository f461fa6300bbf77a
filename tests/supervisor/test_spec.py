"""Service specs: defaults from seed 001, and every mistake named with file, key and fix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bastion.errors import ServiceSpecError
from bastion.supervisor.spec import SecretRef, load_spec, load_specs, parse_spec, validate_dir

PY = sys.executable


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_full_spec_from_toml(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "speech",
        f"""
argv = ["{PY}", "-m", "http.server"]
cwd = "{tmp_path}"
env = {{ LOG_LEVEL = "info" }}
env_allow = ["LANG"]
secrets = {{ OPENAI_API_KEY = "secret:global/openai" }}
autostart = false

[health.startup]
kind = "tcp"
port = 8765
failure_threshold = 30

[health.liveness]
kind = "http"
url = "http://127.0.0.1:8765/health"
interval_s = 10
expect_status = [200, 299]

[health.readiness]
kind = "mcp"
transport = "stdio"

[restart]
policy = "always"

[stop]
signal = "SIGINT"
grace_s = 2
""",
    )
    spec = load_spec(path)
    assert spec.name == "speech"
    assert spec.argv[0] == PY
    assert spec.cwd == tmp_path
    assert spec.env == {"LOG_LEVEL": "info"}
    assert spec.secrets == {"OPENAI_API_KEY": SecretRef("global", "openai")}
    assert spec.health.startup is not None
    assert spec.health.startup.failure_threshold == 30
    assert spec.health.liveness is not None
    assert spec.health.liveness.expect_status == (200, 299)
    assert spec.stdio_probe
    assert spec.restart.policy == "always"
    assert spec.stop.signum.name == "SIGINT"
    assert not spec.autostart


def test_defaults_are_seed_001() -> None:
    spec = parse_spec("svc", {"argv": [PY]})
    assert (spec.restart.max_restarts, spec.restart.window_s) == (3, 300)
    assert (spec.restart.backoff_initial_s, spec.restart.backoff_max_s) == (1, 60)
    assert (spec.breaker.open_timeout_s, spec.breaker.success_threshold) == (30, 2)
    assert (spec.stop.signal, spec.stop.grace_s) == ("SIGTERM", 5)


def test_program_is_resolved_on_path_once() -> None:
    spec = parse_spec("svc", {"argv": ["sh", "-c", "true"]})
    assert Path(spec.argv[0]).is_absolute()


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        ('argv = ["{py}"]\nargz = 1', "argz", "Known keys"),
        ('argv = "python"', "argv", "argv = ["),
        ('argv = ["no-such-program-xyz"]', "argv[0]", "absolute path"),
        ('argv = ["/nonexistent/bin/x"]', "argv[0]", "chmod"),
        ('argv = ["{py}"]\ncwd = "relative/dir"', "cwd", "absolute"),
        ('argv = ["{py}"]\nsecrets = {{ K = "vault:x" }}', "secrets.K", "secret:SCOPE/NAME"),
        ('argv = ["{py}"]\nsecrets = {{ K = "secret:noslash" }}', "secrets.K", "secret:SCOPE"),
        ('argv = ["{py}"]\n[restart]\npolicy = "sometimes"', "restart.policy", "on-failure"),
        ('argv = ["{py}"]\n[restart]\nmax_restarts = -1', "restart.max_restarts", "between"),
        ('argv = ["{py}"]\n[restart]\nbackof = 1', "restart.backof", "backoff_initial_s"),
        ('argv = ["{py}"]\n[health.liveness]\nkind = "tcp"', "health.liveness.port", "port"),
        (
            'argv = ["{py}"]\n[health.liveness]\nkind = "http"\nurl = "http://example.com/"',
            "health.liveness.url",
            "127.0.0.1",
        ),
        ('argv = ["{py}"]\n[health.sometimes]\nkind = "tcp"', "health.sometimes", "liveness"),
        ('argv = ["{py}"]\n[stop]\nsignal = "SIGNOPE"', "stop.signal", "SIGTERM"),
        ('argv = ["{py}"]\nenv = {{ "1BAD" = "x" }}', "env.1BAD", "A-Za-z_"),
        (
            'argv = ["{py}"]\nenv = {{ K = "x" }}\nsecrets = {{ K = "secret:a/b" }}',
            "secrets.K",
            "one place",
        ),
        ("argv = [", "", "syntax"),
    ],
)
def test_mistakes_name_the_file_the_key_and_the_fix(
    tmp_path: Path, text: str, key: str, fix: str
) -> None:
    path = write(tmp_path, "svc", text.format(py=PY))
    with pytest.raises(ServiceSpecError) as info:
        load_spec(path)
    err = info.value
    assert str(path) in err.message
    if key:
        assert f": {key}:" in err.message
        assert err.details["key"] == key
    assert fix in err.hint


def test_bad_service_name_is_refused() -> None:
    with pytest.raises(ServiceSpecError, match="valid service name"):
        parse_spec("Bad Name", {"argv": [PY]})


def test_validate_dir_reports_every_bad_file_and_keeps_the_good(tmp_path: Path) -> None:
    write(tmp_path, "good", f'argv = ["{PY}"]')
    write(tmp_path, "bad1", f'argv = ["{PY}"]\nnope = 1')
    write(tmp_path, "bad2", 'argv = ["missing-prog-xyz"]')
    good, bad = validate_dir(tmp_path)
    assert [s.name for s in good] == ["good"]
    assert sorted(Path(e.details["file"]).name for e in bad) == ["bad1.toml", "bad2.toml"]
    with pytest.raises(ServiceSpecError):
        load_specs(tmp_path)
    assert load_specs(tmp_path / "missing") == []


def test_a_credential_literal_in_env_is_refused_pointing_to_secrets(tmp_path: Path) -> None:
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    path = write(
        tmp_path,
        "agent",
        f"""
argv = ["{PY}", "-c", "pass"]
env = {{ LOG_LEVEL = "info", GITHUB_TOKEN = "{token}" }}
""",
    )
    with pytest.raises(ServiceSpecError) as caught:
        load_spec(path)
    err = caught.value
    assert err.details["key"] == "env.GITHUB_TOKEN"
    assert str(path) in err.message
    assert "a GitHub token" in err.message
    assert 'secrets = { GITHUB_TOKEN = "secret:global/github_token" }' in err.hint
    assert "bastion secrets set github_token" in err.hint
    assert token not in err.message + err.hint
    # A random-looking value under a secret's name, and one inside a URL, too.
    for env in ({"DB_PASSWORD": "Tr0ub4dor&3xyz"}, {"BROKER": "amqp://u:p4ss-w0rd@host/"}):
        with pytest.raises(ServiceSpecError, match="looks like"):
            parse_spec("svc", {"argv": [PY, "-c", "pass"], "env": env})


def test_allow_plaintext_lists_the_env_names_that_only_look_like_credentials() -> None:
    env = {"BUILD_TOKEN": "build-7Fq2Xz9L", "LOG_LEVEL": "info"}
    spec = parse_spec(
        "svc", {"argv": [PY, "-c", "pass"], "env": env, "allow_plaintext": ["BUILD_TOKEN"]}
    )
    assert spec.env == env
    with pytest.raises(ServiceSpecError, match="allow_plaintext"):
        parse_spec("svc", {"argv": [PY, "-c", "pass"], "env": env, "allow_plaintext": "X"})


def test_on_secret_change_restart_by_default_signal_or_none() -> None:
    import signal

    base = {"argv": [PY]}
    assert parse_spec("svc", base).on_secret_change == "restart"
    assert parse_spec("svc", base).secret_change_signal is None
    hup = parse_spec("svc", {**base, "on_secret_change": "signal:HUP"})
    assert hup.secret_change_signal is signal.SIGHUP
    usr1 = parse_spec("svc", {**base, "on_secret_change": "signal:SIGUSR1"})
    assert usr1.secret_change_signal is signal.SIGUSR1
    assert parse_spec("svc", {**base, "on_secret_change": "none"}).secret_change_signal is None


@pytest.mark.parametrize("value", ["reload", "signal:NOPE", "signal:", "signal:SIG_IGN", 1, True])
def test_on_secret_change_mistakes_are_named(value: object) -> None:
    with pytest.raises(ServiceSpecError) as info:
        parse_spec("svc", {"argv": [PY], "on_secret_change": value})
    assert info.value.details["key"] == "on_secret_change"
    assert "signal:HUP" in info.value.hint


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"argv": [sys.executable, "-c\x00"]}, "argv[1]"),
        ({"argv": [sys.executable + "\x00"]}, "argv[0]"),
        ({"argv": [sys.executable], "env": {"A": "x\x00y"}}, "env.A"),
        ({"argv": [sys.executable], "cwd": "/tmp\x00"}, "cwd"),
        ({"argv": [sys.executable], "env_allow": ["LA\x00NG"]}, "env_allow[0]"),
        (
            {"argv": [sys.executable], "health": {"liveness": {"kind": "exec", "argv": ["a\x00"]}}},
            "health.liveness.argv[0]",
        ),
        ({"argv": [sys.executable], "env": {"A\udce9": "x"}}, "env.A\\udce9"),
        ({"argv": [sys.executable, "caf\udce9"]}, "argv[1]"),
    ],
)
def test_a_nul_or_a_lone_surrogate_anywhere_is_named_by_its_key(
    data: dict[str, object], key: str
) -> None:
    """A NUL (a \\u0000 escape in TOML or JSON) failed only at the spawn ("cannot start"), or
    read as "not a directory" / "not executable"; a lone surrogate from JSON was accepted
    and then failed the spec file's write (a 400 "invalid request" naming nothing)."""
    with pytest.raises(ServiceSpecError) as err:
        parse_spec("svc", data, source="svc.toml")
    assert err.value.details["key"] == key
    assert err.value.message.startswith(f"svc.toml: {key}: ")
    assert ("NUL" in err.value.message) != ("UTF-8" in err.value.message)


def test_a_nul_escape_in_a_spec_file_is_named_by_services_validate(tmp_path: Path) -> None:
    (tmp_path / "svc.toml").write_text(
        f'argv = ["{sys.executable}"]\n[env]\nTOKEN_FILE = "/run/x\\u0000"\n', encoding="utf-8"
    )
    good, bad = validate_dir(tmp_path)
    assert good == []
    assert [e.message for e in bad] == [
        f"{tmp_path / 'svc.toml'}: env.TOKEN_FILE: holds a NUL character, which no argument, "
        "path or environment variable can carry"
    ]
