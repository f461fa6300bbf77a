/**
 * Start the daemon as a sidecar of a Node/Electron main process (`spawnBastion`), or attach
 * to one already running for a home (`connectBastion`).
 *
 * `spawnBastion` runs `EXECUTABLE --home HOME serve --port 0 --exit-with-parent ...ARGS`,
 * reads the first stdout line (the handshake JSON: pid, port, url, version, api_version)
 * within a deadline, refuses a daemon of another API major, reads the token from
 * `HOME/run/token` and returns a typed client with `stop()` (SIGTERM, wait, SIGKILL after a
 * grace). `--exit-with-parent` makes the daemon stop by itself when this process dies, even
 * by `kill -9`. The token stays in this process: never hand it to a renderer.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { BastionClient, checkTimeout, type TokenSource } from "./client.js";
import { BastionError } from "./errors.js";
import { checkApiVersion } from "./version.js";

/** The daemon's handshake: the first stdout line of `bastion serve`, and `run/daemon.json`. */
export interface Handshake {
  pid: number;
  port: number;
  url: string;
  version: string;
  api_version: string;
  started_at: string;
  hosts: string[];
}

export interface SpawnOptions {
  /** The bastion home (BASTION_HOME): created on first start. */
  home: string;
  /** The daemon executable (the standalone `bastion` built by `make dist`, or a venv's); default `bastion` on PATH. */
  executable?: string;
  /** More arguments after `serve --port 0 --exit-with-parent`. */
  args?: string[];
  /** A fixed port instead of any free one. */
  port?: number;
  /** The daemon's environment (default: this process's). */
  env?: NodeJS.ProcessEnv;
  /** How long to wait for the handshake line (default 30 s). */
  handshakeTimeoutMs?: number;
  /** Sent as `Origin` with every request. */
  origin?: string;
  /** The client's request deadline (`ClientOptions.timeoutMs`; default 30 000 ms). */
  timeoutMs?: number;
  /** The daemon's stderr log: kept (the last 64 KiB, `sidecar.stderr()`), inherited, or dropped. */
  stderr?: "keep" | "inherit" | "ignore";
}

export interface Sidecar {
  client: BastionClient;
  handshake: Handshake;
  /** The spawned process (under the one-file executable: its bootloader; `handshake.pid` is the daemon). */
  process: ChildProcess;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  exited: Promise<number | string>;
  /** SIGTERM, wait up to `graceMs` (default 20 s) for a graceful stop, then SIGKILL. */
  stop(options?: { graceMs?: number }): Promise<number | string>;
  /** The last 64 KiB of the daemon's stderr (with `stderr: "keep"`). */
  stderr(): string;
}

const STDERR_KEEP = 64 * 1024;

/** A token read from `HOME/run/token`, read again after a 401 (a restarted daemon may have a new one). */
export function fileTokenSource(home: string): TokenSource {
  const path = join(home, "run", "token");
  let current: string | undefined;
  const read = async () => (await readFile(path, "ascii")).trim();
  return {
    async get() {
      current ??= await read();
      return current;
    },
    async refresh() {
      const fresh = await read().catch(() => null);
      if (fresh === null || fresh === current) return null;
      current = fresh;
      return fresh;
    },
  };
}

export async function spawnBastion(options: SpawnOptions): Promise<Sidecar> {
  if (options.timeoutMs !== undefined) checkTimeout("timeoutMs", options.timeoutMs); // before a daemon starts
  const executable = options.executable ?? "bastion";
  const argv = [
    "--home",
    options.home,
    "serve",
    "--port",
    String(options.port ?? 0),
    "--exit-with-parent",
    ...(options.args ?? []),
  ];
  const keep = (options.stderr ?? "keep") === "keep";
  const child = spawn(executable, argv, {
    env: options.env ?? process.env,
    stdio: ["ignore", "pipe", keep ? "pipe" : options.stderr === "inherit" ? "inherit" : "ignore"],
  });
  let stderrTail = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (text: string) => {
    stderrTail = (stderrTail + text).slice(-STDERR_KEEP);
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once("exit", (code, signal) => resolve(code ?? signal ?? "unknown"));
  });
  const spawnError = new Promise<never>((_, reject) => {
    child.once("error", (err) =>
      reject(
        new BastionError(
          "sidecar_exited",
          `cannot start ${executable}: ${err.message}`,
          "Pass `executable`: the path of the bastion executable (dist/bastion).",
          0,
          { cause: err },
        ),
      ),
    );
  });
  let line: string;
  try {
    line = await Promise.race([
      firstLine(child, options.handshakeTimeoutMs ?? 30_000, () => stderrTail),
      spawnError,
    ]);
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  child.stdout?.resume(); // nothing else comes on stdout; keep the pipe drained anyway
  let handshake: Handshake;
  try {
    handshake = JSON.parse(line) as Handshake;
    checkApiVersion(handshake.api_version);
  } catch (err) {
    child.kill("SIGTERM");
    if (err instanceof BastionError) throw err;
    throw new BastionError("sidecar_exited", `the daemon's first line is not a handshake: ${line.slice(0, 200)}`);
  }
  const client = new BastionClient({
    baseUrl: handshake.url,
    token: fileTokenSource(options.home),
    origin: options.origin,
    timeoutMs: options.timeoutMs,
  });
  const stop = async ({ graceMs = 20_000 } = {}): Promise<number | string> => {
    if (child.exitCode !== null || child.signalCode !== null) return exited;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    try {
      return await exited;
    } finally {
      clearTimeout(timer);
    }
  };
  return { client, handshake, process: child, exited, stop, stderr: () => stderrTail };
}

function firstLine(child: ChildProcess, timeoutMs: number, stderr: () => string): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = "";
    const stdout = child.stdout;
    if (stdout === null) return reject(new BastionError("sidecar_exited", "the daemon has no stdout pipe"));
    stdout.setEncoding("utf8");
    const cleanup = () => {
      clearTimeout(timer);
      stdout.off("data", onData);
      child.off("exit", onExit);
    };
    const onData = (text: string) => {
      buffered += text;
      const end = buffered.indexOf("\n");
      if (end >= 0) {
        cleanup();
        resolve(buffered.slice(0, end));
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      cleanup();
      reject(
        new BastionError(
          "sidecar_exited",
          `the daemon exited (${code ?? signal}) before its handshake: ${lastLines(stderr())}`,
          "Its stderr above says why; `bastion doctor` checks the home.",
        ),
      );
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new BastionError(
          "sidecar_timeout",
          `no handshake from the daemon within ${timeoutMs} ms: ${lastLines(stderr())}`,
          "Raise handshakeTimeoutMs on a slow machine, or check the daemon's stderr.",
        ),
      );
    }, timeoutMs);
    stdout.on("data", onData);
    child.on("exit", onExit);
  });
}

function lastLines(text: string, count = 5): string {
  return text.trim().split("\n").slice(-count).join(" | ") || "(no stderr)";
}

export interface ConnectOptions {
  home: string;
  origin?: string;
  /**
   * How long the daemon the handshake names may take to answer `GET /health` (default
   * 10 000 ms). Past it, connectBastion rejects with `daemon_unreachable`: its port accepts
   * but nothing answers (a stopped or hung daemon, or another program on its port).
   */
  confirmTimeoutMs?: number;
  /** The client's request deadline (`ClientOptions.timeoutMs`; default 30 000 ms). */
  timeoutMs?: number;
}

/** How long `GET /health` may take before the handshake's port is taken as not answering. */
const CONFIRM_TIMEOUT_MS = 10_000;

/** Attach to the daemon running for `home` (its `run/daemon.json` and `run/token`). */
export async function connectBastion(options: ConnectOptions): Promise<BastionClient> {
  const timeoutMs = checkTimeout("confirmTimeoutMs", options.confirmTimeoutMs ?? CONFIRM_TIMEOUT_MS);
  if (options.timeoutMs !== undefined) checkTimeout("timeoutMs", options.timeoutMs);
  const handshake = await readHandshake(options.home, timeoutMs);
  return new BastionClient({
    baseUrl: handshake.url,
    token: fileTokenSource(options.home),
    origin: options.origin,
    timeoutMs: options.timeoutMs,
    // A daemon restarted with --port 0 listens elsewhere: look again once, on a refused connection.
    rediscover: async () => {
      const again = await readHandshake(options.home, timeoutMs).catch(() => null);
      return again?.url ?? null;
    },
  });
}

async function readHandshake(home: string, timeoutMs: number): Promise<Handshake> {
  const path = join(home, "run", "daemon.json");
  let handshake: Handshake;
  try {
    handshake = JSON.parse(await readFile(path, "utf8")) as Handshake;
  } catch (err) {
    throw new BastionError(
      "daemon_not_running",
      `no bastion daemon is running for ${home} (no readable ${path})`,
      "Start one: spawnBastion({home, executable}) or `bastion --home HOME serve`.",
      0,
      { cause: err },
    );
  }
  try {
    process.kill(handshake.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") {
      throw new BastionError(
        "daemon_not_running",
        `the bastion daemon of ${home} (pid ${handshake.pid}) is gone; its handshake file is stale`,
        "Start it again.",
      );
    }
  }
  checkApiVersion(handshake.api_version);
  await confirmDaemon(home, handshake, timeoutMs);
  return handshake;
}

/**
 * The token is sent only to the daemon the handshake names: a daemon killed with SIGKILL
 * leaves `run/daemon.json` behind, and by now another program may listen on its port (the
 * pid may even be alive again as another program). `GET /health` needs no token; its `pid`
 * (API 1.1) must be the handshake's. A 1.0 daemon has no `pid` there: its answer must still
 * be a bastion daemon's health (`status`, `api_version`).
 */
async function confirmDaemon(home: string, handshake: Handshake, timeoutMs: number): Promise<void> {
  const stale = (why: string, cause?: unknown) =>
    new BastionError(
      "daemon_not_running",
      `the bastion daemon of ${home} (pid ${handshake.pid}) does not answer at ${handshake.url}: ${why}; its handshake file is stale`,
      "Start it again (spawnBastion, or `bastion --home HOME serve`).",
      0,
      cause === undefined ? undefined : { cause },
    );
  let health: { status?: unknown; api_version?: unknown; pid?: unknown };
  try {
    const response = await fetch(`${handshake.url}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    health = (await response.json()) as typeof health;
  } catch (err) {
    if ((err as Error | undefined)?.name === "TimeoutError") {
      // Its pid is alive and its port accepts: a daemon stopped (SIGSTOP, a debugger) or
      // hung, or another program on its port. Not "stale": starting another would be refused.
      throw new BastionError(
        "daemon_unreachable",
        `the bastion daemon of ${home} (pid ${handshake.pid}) accepts at ${handshake.url} but did not answer GET /health within ${timeoutMs} ms`,
        `Check that process (stopped? overloaded?) and \`bastion --home HOME doctor\`; on a slow machine raise confirmTimeoutMs.`,
        0,
        { cause: err },
      );
    }
    throw stale("nothing there answers as bastion does", err);
  }
  if (health === null || typeof health !== "object" || health.status !== "ok" || typeof health.api_version !== "string") {
    throw stale("another program answers there");
  }
  if (health.pid !== undefined && health.pid !== handshake.pid) {
    throw stale(`another bastion daemon (pid ${String(health.pid)}) answers there`);
  }
}
