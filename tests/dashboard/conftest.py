"""Fixtures for the browser suite: one real ``bastion serve`` per module, one Chromium.

The daemon runs as a subprocess on a fresh home with the encrypted-file vault (key from the
environment, so no keychain is needed) and three services: the shipped echo server, a
worker that prints an injected secret (which must reach the page only as ``[REDACTED:…]``)
and a crash-looper whose restart budget is tiny, so its breaker opens within seconds.

Chromium is Debian's (``shutil.which("chromium")``) driven by Playwright's
``executable_path``; nothing is downloaded. Every page records console errors, failed
requests, HTTP errors and any request that is not for the daemon's own origin (those are
aborted before they leave); :class:`PageWatch` asserts all four lists are empty.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.config import Config, load_config
from bastion.demo import free_port

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORTS = {"desktop": (1280, 800), "phone": (390, 844)}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"
#: The value the worker prints; it must never reach a page or a response in the clear.
SENTINEL_NAME = "DEMO_API_KEY"


@dataclasses.dataclass
class Daemon:
    home: Path
    config: Config
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    sentinel: str

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _spec(argv: list[str], extra: str = "") -> str:
    return f"argv = {json.dumps(argv)}\n{extra}"


def write_services(services_dir: Path) -> None:
    py = sys.executable
    echo_port = free_port()
    specs = {
        "echo": _spec(
            [py, "-m", "bastion.demo.echo", "--port", str(echo_port)],
            f"""
[health.liveness]
kind = "http"
url = "http://127.0.0.1:{echo_port}/health"
interval_s = 1
timeout_s = 2
""",
        ),
        "worker": _spec(
            [py, "-m", "bastion.demo.worker", "--interval", "0.5"],
            f'secrets = {{ {SENTINEL_NAME} = "secret:global/{SENTINEL_NAME}" }}\n',
        ),
        "crasher": _spec(
            [py, "-c", "import sys; print('crasher: giving up', flush=True); sys.exit(3)"],
            """
[restart]
policy = "on-failure"
max_restarts = 2
window_s = 300
backoff_initial_s = 3
backoff_max_s = 3

[breaker]
open_timeout_s = 600
""",
        ),
    }
    services_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name, text in specs.items():
        (services_dir / f"{name}.toml").write_text(text)
        (services_dir / f"{name}.toml").chmod(0o600)


def _read_line(proc: subprocess.Popen[bytes], timeout: float, log_path: Path) -> str:
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise AssertionError(
                f"bastion serve printed no handshake (rc={proc.poll()}):\n"
                + log_path.read_text(errors="replace")
            )
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            if chunk:
                buf += chunk
    return buf.decode()


def spawn_daemon(
    home: Path,
    env: dict[str, str],
    log_path: Path,
    *,
    port: int = 0,
    sentinel: str = "",
) -> Daemon:
    """``bastion serve`` on ``home`` as a child process, once it has printed its handshake."""
    cfg = load_config(home, env=env)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bastion", "--home", str(home), "serve", "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
    try:
        handshake = json.loads(_read_line(proc, 60, log_path))
    except BaseException:
        stop_daemon(proc)
        raise
    return Daemon(home, cfg, env, proc, int(handshake["port"]), log_path, sentinel)


def stop_daemon(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful stop: services first), then SIGKILL if it hangs; idempotent."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()


def file_vault_env() -> dict[str, str]:
    """The environment of a daemon whose vault is the encrypted file, keyed from the env."""
    env = {
        **os.environ,
        "BASTION_VAULT_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("BASTION_HOME", None)
    return env


FILE_VAULT_TOML = '[vault]\nbackend = "encrypted-file"\nkey_source = "env"\n'


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("dash")
    home = root / "home"
    home.mkdir(mode=0o700)
    (home / "bastion.toml").write_text(FILE_VAULT_TOML)
    env = file_vault_env()
    cfg = load_config(home, env=env)
    sentinel = "sentinel-" + secrets.token_hex(12)
    # The secret the worker prints exists before the daemon starts it.
    from bastion.app import Home
    from bastion.vault import Vault

    Home.init(cfg).close()
    vault = Vault.open(cfg, env=env)
    try:
        vault.set(SENTINEL_NAME, sentinel, actor="test")
    finally:
        vault.close()
    write_services(cfg.services_dir)

    running = spawn_daemon(home, env, root / "daemon.log", sentinel=sentinel)
    try:
        yield running
    finally:
        stop_daemon(running.proc)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclasses.dataclass
class PageWatch:
    """What a page did that it must not: console errors, failures, foreign requests."""

    origin: str
    console_errors: list[str] = dataclasses.field(default_factory=list)
    page_errors: list[str] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)
    http_errors: list[str] = dataclasses.field(default_factory=list)
    foreign: list[str] = dataclasses.field(default_factory=list)
    requests: list[str] = dataclasses.field(default_factory=list)
    #: Every answered API call (not streams), to scan bodies for values that must not leak.
    api_responses: list[Any] = dataclasses.field(default_factory=list)
    #: HTTP errors a test provokes on purpose (e.g. the sign-in page's 401 before login).
    expected_http_errors: set[str] = dataclasses.field(default_factory=set)
    #: The test is navigating the page away (see :meth:`navigating`).
    leaving: bool = False

    @contextlib.contextmanager
    def navigating(self) -> Iterator[None]:
        """Around a navigation the test makes (a reload, another URL): the requests the old
        document still had out (the view's timed refresh, the header's status) are aborted
        by it, and the browser reports each as failed (net::ERR_ABORTED). Those are not the
        page's fault; any other failure still is."""
        self.leaving = True
        try:
            yield
        finally:
            self.leaving = False

    def attach(self, context: Any, page: Any) -> None:
        def route(route: Any) -> None:
            url = route.request.url
            self.requests.append(url)
            if url == self.origin or url.startswith(self.origin + "/"):
                route.continue_()
            else:  # never lets it leave: the test fails on the record instead
                self.foreign.append(url)
                route.abort()

        context.route("**/*", route)
        page.on(
            "console",
            lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
        page.on("requestfailed", self._on_failed)
        page.on("response", self._on_response)

    def _on_failed(self, req: Any) -> None:
        aborted = "ERR_ABORTED" in str(req.failure)
        if aborted and (self.leaving or _is_closed_stream(req)):
            return
        self.failed.append(f"{req.method} {req.url}: {req.failure}")

    def _on_response(self, resp: Any) -> None:
        if resp.status >= 400 and resp.url not in self.expected_http_errors:
            self.http_errors.append(f"{resp.status} {resp.url}")
        if resp.request.resource_type == "fetch":
            self.api_responses.append(resp)

    def response_bodies(self) -> list[str]:
        return [resp.text() for resp in self.api_responses]

    def assert_clean(self) -> None:
        assert self.foreign == [], f"requests left the daemon's origin: {self.foreign}"
        assert self.page_errors == [], f"uncaught errors: {self.page_errors}"
        assert self.console_errors == [], f"console errors: {self.console_errors}"
        assert self.failed == [], f"failed requests: {self.failed}"
        assert self.http_errors == [], f"HTTP errors: {self.http_errors}"


def _is_closed_stream(request: Any) -> bool:
    # An EventSource the page closes on purpose (leaving the logs view) reports ERR_ABORTED.
    return request.resource_type == "eventsource"


def login_url(daemon: Daemon) -> str:
    """A sign-in link from ``bastion dashboard --json``, run in-process like a user would."""
    from click.testing import CliRunner

    from bastion.cli import cli

    result = CliRunner().invoke(
        cli, ["--home", str(daemon.home), "dashboard", "--json"], env={"BASTION_HOME": None}
    )
    assert result.exit_code == 0, result.output
    url: str = json.loads(result.output)["url"]
    assert url.startswith(daemon.origin + "/login?t=")
    return url


@dataclasses.dataclass
class Session:
    page: Any
    context: Any
    watch: PageWatch


@contextlib.contextmanager
def open_page(
    chromium: Any, daemon: Daemon, *, width: int = 1280, init_script: str | None = None
) -> Iterator[Session]:
    """A page signed in to ``daemon`` with a fresh link; checked clean when the block ends.
    ``init_script`` runs in every document of the page before its own scripts."""
    context = chromium.new_context(viewport={"width": width, "height": 800})
    if init_script is not None:
        context.add_init_script(init_script)
    page = context.new_page()
    # Waits are hang detectors: generous, since the suite shares two cores with everything else.
    page.set_default_timeout(60_000)
    watch = PageWatch(daemon.origin)
    watch.attach(context, page)
    page.goto(login_url(daemon))
    # Signed in: the header shows the daemon's status, read with the session cookie.
    page.wait_for_selector("#daemon-info:has-text('pid')")
    try:
        yield Session(page, context, watch)
        watch.assert_clean()
    finally:
        context.close()


@pytest.fixture
def signed_in(daemon: Daemon, chromium: Any) -> Iterator[Session]:
    """A signed-in page at the desktop viewport; checked clean after the test."""
    with open_page(chromium, daemon) as session:
        yield session


def wait_check_passed(page: Any) -> None:
    """Wait for the dashboard's quick check to answer, then say what it answered: a check that
    failed shows its problems in the assertion instead of an anonymous selector timeout. The
    wait is a hang detector, generous because the check runs on a machine busy with the rest
    of the suite."""
    page.wait_for_selector("#db-check[data-ok]", timeout=60_000)
    assert page.get_attribute("#db-check", "data-ok") == "true", page.inner_text("#db-check")
