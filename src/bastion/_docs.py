"""Generated reference pages: ``python -m bastion._docs`` (``make docs``) rewrites them, and
``tests/test_docs.py`` fails when a committed page differs from what the code generates.

Each page is rendered from the code it documents (the error tree, the supervisor's state
table, the click command tree), so the docs cannot drift from the behaviour.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

import click

__all__ = ["PAGES", "SERVICE_EXAMPLES", "render_cli_reference", "write_all"]


def _errors() -> str:
    from bastion.errors import render_errors_markdown

    return render_errors_markdown()


def _config() -> str:
    from bastion.config import render_config_markdown

    return render_config_markdown()


#: One example per probe kind (and both MCP transports): each is parsed by tests/test_docs.py
#: with the same code that reads services/*.toml, so the page cannot show a spec that fails.
SERVICE_EXAMPLES: dict[str, tuple[str, str]] = {
    "process": (
        "The default liveness check: the process is alive. No [health] needed. Its exit is an\n"
        "event the supervisor sees the moment it happens, so the default check does not run on a\n"
        "timer once the service has settled: it runs once a second only while a passing check\n"
        "still counts (a half-open breaker's trial, or restart history waiting for\n"
        "`reset_after_s` of stable running), and an idle daemon does not wake for it. A declared\n"
        '`kind = "process"` probe keeps its `interval_s`.',
        """argv = ["python3", "-m", "worker"]
secrets = { OPENAI_API_KEY = "secret:global/OPENAI_API_KEY" }
env = { LOG_FORMAT = "json" }
env_allow = ["LANG", "TZ"]

[restart]
policy = "on-failure"
max_restarts = 3
window_s = 300
""",
    ),
    "tcp": (
        "Started once the port accepts a connection; restarted when it stops accepting.",
        """argv = ["python3", "-m", "http.server", "6390", "--bind", "127.0.0.1"]

[health.startup]
kind = "tcp"
port = 6390
interval_s = 0.2
failure_threshold = 50

[health.liveness]
kind = "tcp"
port = 6390
interval_s = 5
""",
    ),
    "http": (
        "A speech server: ready when /health answers 2xx/3xx; the breaker opens after 3 "
        "restarts in 5 minutes.",
        """argv = ["python3", "-m", "speech_server", "--port", "8765"]
env_allow = ["HOME"]

[health.startup]
kind = "http"
url = "http://127.0.0.1:8765/health"
interval_s = 0.5
timeout_s = 2
failure_threshold = 60

[health.liveness]
kind = "http"
url = "http://127.0.0.1:8765/health"
interval_s = 10
expect_status = [200, 299]

[breaker]
open_timeout_s = 30
success_threshold = 2

[stop]
signal = "SIGTERM"
grace_s = 5
""",
    ),
    "exec": (
        "Healthy while a command exits 0 (run without a shell): here, while the broker it "
        "needs accepts connections.",
        """argv = ["python3", "-m", "queue_worker"]

[health.liveness]
kind = "exec"
command = ["python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 5672), 2)"]
interval_s = 10
timeout_s = 3
""",
    ),
    "mcp (stdio)": (
        "An MCP server on stdio (an `npx` package works the same way): bastion sends a JSON-RPC "
        "ping on its stdin (its stdout is the protocol, so only stderr is captured).",
        """argv = ["python3", "-m", "my_mcp_server"]
secrets = { GITHUB_TOKEN = "secret:global/GITHUB_TOKEN" }

[health.liveness]
kind = "mcp"
transport = "stdio"
interval_s = 30
timeout_s = 5
""",
    ),
    "mcp (http)": (
        "An MCP server on streamable HTTP.",
        """argv = ["python3", "-m", "my_mcp_server", "--port", "8931"]

[health.readiness]
kind = "mcp"
transport = "http"
url = "http://127.0.0.1:8931/mcp"
interval_s = 15
""",
    ),
    "websocket": (
        "A WebSocket server: the probe opens the URL (`websockets`), sends `send`, waits for a "
        "message containing `expect`, and completes the close handshake. Each failure is named: "
        "refused connection, handshake refused (an HTTP status instead of an upgrade), closed "
        "before answering, wrong answer, no close handshake, timed out. The URL must be "
        "loopback, and `send` is refused when it looks like a credential.",
        """argv = ["python3", "-m", "realtime_server", "--port", "8780"]

[health.liveness]
kind = "websocket"
url = "ws://127.0.0.1:8780/ws"
send = "ping"
expect = "pong"
interval_s = 10
timeout_s = 3
""",
    ),
    "grpc": (
        "A gRPC server's standard health service (`grpc.health.v1.Health/Check`): healthy "
        "when it answers SERVING for `service` (empty: the whole server). The client is "
        "[grpclib](https://pypi.org/project/grpclib/), pure Python (h2 + protobuf), installed "
        "with `pip install 'bastion[grpc]'`; grpcio was not taken: about ten times the size, "
        "with a native core, for one unary call. Without the extra, `services validate` "
        "names the missing package.",
        """argv = ["python3", "-m", "model_server", "--grpc-port", "50051"]

[health.readiness]
kind = "grpc"
port = 50051
service = "model.Inference"
interval_s = 5
""",
    ),
}


def _table(cls: type, title_doc: str = "") -> list[str]:
    import dataclasses
    import typing

    from bastion.config import _field_docs, _toml_value, _type_text

    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    lines = ["| key | type | default | what it does |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name == "source":
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        if default is None:
            shown = "required" if f.name in {"name", "argv"} else "none"
        elif dataclasses.is_dataclass(default) or isinstance(default, dict):
            shown = "see below" if dataclasses.is_dataclass(default) else "`{}`"
        else:
            shown = f"`{_toml_value(default)}`"
        bounds = ""
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if lo is not None or hi is not None:
            bounds = f" ({lo if lo is not None else '…'} to {hi if hi is not None else '…'})"
        kind = _type_text(hints[f.name])
        if "Spec" in kind or "Mapping" in kind or "Path" in kind:
            kind = {
                "env": "table of strings",
                "secrets": "table of references",
                "cwd": "path",
            }.get(f.name, "table")
        if f.name in {"startup", "liveness", "readiness"}:
            kind = "probe table"
        what = docs.get(f.name, "").replace("``", "`").replace("|", r"\|")
        lines.append(f"| `{f.name}` | {kind}{bounds} | {shown} | {what} |")
    return lines


def _services() -> str:
    from bastion.supervisor import spec

    lines = [
        "# Service spec reference",
        "",
        "<!-- Generated from src/bastion/supervisor/spec.py by `python -m bastion._docs`; do not",
        "edit. -->",
        "",
        "A service is one TOML file, `<home>/services/<name>.toml`; the file name is the",
        "service's name (lower-case letters, digits, `_ . -`; not a Windows device name such as",
        "`con`, `nul` or `com1`, which no file can have there). The file must be yours and",
        "writable by you alone (0600 as bastion writes it; 0644 is fine): one another user owns",
        "or can write is refused, as it could make the service run their command with your",
        "secrets. `bastion services validate` checks",
        "every file and names the file, the key and the fix of each problem; the daemon watches",
        "the folder and `bastion services reload` applies edits now. The child starts from an",
        "empty environment plus `env`, `env_allow` and `secrets`; secrets are resolved from the",
        "vault at each spawn and redacted from the captured output.",
        "",
        "When a secret a running service uses is set, rotated or deleted -- by the CLI, the",
        "API, an app using the library, any process -- the daemon sees vault.db change (inotify",
        "on Linux; polled every 0.5 s elsewhere) and does what `on_secret_change` says:",
        '`"restart"` (the default) stops the service by its `[stop]` policy and starts it',
        'again at once with the new value; `"signal:HUP"` (any signal name) sends the program',
        "that signal (its environment keeps the old value: for a program that fetches the",
        'secret itself); `"none"` only records a `service.secret_changed` event. A deleted',
        "secret stops the service (unless `none`), the reason naming the secret, and so does",
        "a new value the vault cannot give a `signal:` service (a locked keychain, a damaged",
        "record): the program is never told to fetch a value the redactor does not hold. The",
        "redactor learns a new value before the child can print it and keeps hiding the old",
        "one. The same value set again changes nothing.",
        "",
        "## Top-level keys",
        "",
        *_table(spec.ServiceSpec),
        "",
        "## `[health.startup]`, `[health.liveness]`, `[health.readiness]`",
        "",
        (spec.HealthSpec.__doc__ or "").strip(),
        "Each is a probe table with these keys (which apply depends on `kind`):",
        "",
        *_table(spec.ProbeSpec),
        "",
    ]
    for section, cls in (
        ("restart", spec.RestartSpec),
        ("breaker", spec.BreakerSpec),
        ("stop", spec.StopSpec),
        ("logs", spec.LogSpec),
    ):
        doc = (cls.__doc__ or "").strip()
        lines += [f"## `[{section}]`", "", doc, "", *_table(cls), ""]
    lines += ["## Examples, one per probe kind", ""]
    for kind, (what, text) in SERVICE_EXAMPLES.items():
        lines += [f"### {kind}", "", what, "", "```toml", text.rstrip("\n"), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def _states() -> str:
    module = importlib.import_module("bastion.supervisor.states")
    render: Callable[[], str] = module.render_states_markdown
    return render()


def _command_rows(
    command: click.Command, path: list[str], parent: click.Context | None, root: click.Context
) -> list[str]:
    lines: list[str] = []
    name = " ".join(path)
    lines.append(f"## `{name}`")
    lines.append("")
    # The root's context is the program itself: a child context named "bastion" under it
    # would print "Usage: bastion bastion ...".
    sub_ctx = root if parent is None else click.Context(command, info_name=path[-1], parent=parent)
    help_text = command.get_help(sub_ctx)
    # click wraps help to the terminal width; pin it so the page is the same everywhere.
    lines.append("```")
    lines.extend(line.rstrip() for line in help_text.splitlines())
    lines.append("```")
    lines.append("")
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(sub_ctx):
            sub = command.get_command(sub_ctx, sub_name)
            if sub is not None and not sub.hidden:
                lines.extend(_command_rows(sub, [*path, sub_name], sub_ctx, root))
    return lines


def render_cli_reference() -> str:
    from bastion.cli import cli

    ctx = click.Context(
        cli,
        info_name="bastion",
        terminal_width=100,
        max_content_width=100,
        help_option_names=["-h", "--help"],
    )
    lines = [
        "# CLI reference",
        "",
        "<!-- Generated from the click commands by `python -m bastion._docs`; do not edit. -->",
        "",
        "Every command takes `--json` for machine-readable output (timestamps as RFC 3339 UTC",
        "strings); tables print as tab-separated rows when piped (`--no-headers` drops the",
        "header line). Errors are printed as `error: …` plus a `hint: …` (with `--json`, the",
        "API's `{code, message, hint}` object) and exit with the statuses in",
        "[errors.md](errors.md#exit-statuses). A usage error (an unknown command or option, a",
        "missing or malformed argument) is one too: its hint names the accepted form (bounds,",
        "choices, an existing file), the closest command or option when one was mistyped, and",
        "the `bastion ... --help` to read; it exits 2 (code `usage_error` under `--json`).",
        "",
    ]
    lines.extend(_command_rows(cli, ["bastion"], None, ctx))
    return "\n".join(lines).rstrip() + "\n"


def _has_states() -> bool:
    try:
        importlib.import_module("bastion.supervisor.states")
    except ImportError:
        return False
    return True


#: docs path (relative to the repository root) -> renderer
PAGES: dict[str, Callable[[], str]] = {
    "docs/errors.md": _errors,
    "docs/config.md": _config,
    "docs/services.md": _services,
    "docs/cli-reference.md": render_cli_reference,
}
if _has_states():
    PAGES["docs/states.md"] = _states


def write_all(root: Path) -> list[Path]:
    from bastion._fs import atomic_write

    written = []
    for rel, render in PAGES.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, render(), mode=0o644)
        written.append(target)
    return written


if __name__ == "__main__":
    repo = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd()
    for page in write_all(repo):
        print(f"wrote {page}")
