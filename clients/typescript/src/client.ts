/**
 * The typed client: `openapi-fetch` over the daemon's generated OpenAPI types, with the
 * bearer token added to every request, error answers thrown as `BastionError`, and the SSE
 * routes as async iterators.
 *
 * The token comes from a `TokenSource`: after a daemon restart with a new token, a 401 makes
 * the client ask the source again (it re-reads `run/token`) and retry that request once.
 *
 * Every request has a deadline (`timeoutMs`): a daemon that is stopped (SIGSTOP, a machine
 * waking from sleep) or hung keeps its port, the kernel accepts, and nothing ever answers.
 * Past the deadline the request is aborted (its connection closed) and the call rejects with
 * `request_timeout`. A stream's deadline covers its opening only (see `StreamOptions`).
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";

import { BastionError } from "./errors.js";
import type { components, paths } from "./schema.js";
import { STREAM_IDLE_TIMEOUT_MS, sseStream, type SseEvent, type StreamOptions } from "./sse.js";

export type Schemas = components["schemas"];
export type Health = Schemas["Health"];
export type LogRecord = Schemas["LogOut"];
export type EventRecord = Schemas["EventOut"];
export type ServiceStatus = Schemas["ServiceOut"];
export type ApiClient = Client<paths>;

export interface TokenSource {
  /** The token to send. */
  get(): Promise<string>;
  /** A fresh token after a 401 (null: nothing new, the 401 stands). */
  refresh?(): Promise<string | null>;
}

export interface ClientOptions {
  /** `http://127.0.0.1:PORT` (the handshake's `url`). */
  baseUrl: string;
  token: string | TokenSource;
  /** Sent as `Origin` (a web view's origin; must be in the daemon's `api.allowed_origins`). */
  origin?: string;
  /** Called before a request once a connection was refused: a new base URL, or null. */
  rediscover?: () => Promise<string | null>;
  fetch?: typeof globalThis.fetch;
  /**
   * How long one request may take, from sending it to the end of its answer (default
   * 30 000 ms, as the Python client's); a stream's, until its answer starts. Past it the
   * request is aborted and the call rejects with `request_timeout`. Calls that wait on
   * purpose take a longer one: `client.withTimeout(ms)` (a service stop or restart waits the
   * service's `grace_s`, up to an hour).
   */
  timeoutMs?: number;
}

/** How long a request may take unless the client says otherwise: loopback requests answer
 * in milliseconds; the slowest ordinary ones wait on SQLite's busy timeout or the keychain
 * (5 s each by default). The Python client (`bastion.client.DaemonClient`) waits as long. */
export const DEFAULT_TIMEOUT_MS = 30_000;

export interface LogStreamOptions extends StreamOptions {
  /** Only this source (a service name). */
  source?: string;
  level?: "debug" | "info" | "warning" | "error";
  /** Newest rows sent first when not resuming (0-1000). */
  backlog?: number;
}

export interface EventStreamOptions extends StreamOptions {
  kind?: string;
  subject?: string;
  backlog?: number;
}

export class BastionClient {
  /** The typed API: `await client.api.GET("/v1/settings/{key}", {params: {path: {key}}})`. An
   * error answer rejects with a `BastionError`; `data` is then always set (see `ok`). A call's
   * own `signal` aborts it too (it rejects with that signal's reason). */
  readonly api: ApiClient;
  /** Where the daemon is (shared with the clients `withTimeout` returns: a rediscovery moves all). */
  #where: { baseUrl: string };
  readonly #options: ClientOptions;
  readonly #tokens: TokenSource;
  readonly #origin: string | undefined;
  readonly #rediscover: (() => Promise<string | null>) | undefined;
  readonly #fetch: typeof globalThis.fetch;
  readonly #timeoutMs: number;
  /** The base URL `api` builds its requests on (fixed when it was made). */
  readonly #apiBase: string;

  constructor(options: ClientOptions) {
    this.#timeoutMs = checkTimeout("timeoutMs", options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    this.#options = options;
    this.#where = { baseUrl: options.baseUrl.replace(/\/$/, "") };
    const token = options.token;
    this.#tokens = typeof token === "string" ? { get: async () => token } : token;
    this.#origin = options.origin;
    this.#rediscover = options.rediscover;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#apiBase = this.#where.baseUrl;
    this.api = createClient<paths>({
      baseUrl: this.#apiBase,
      fetch: (request: Request) => this.#send(request, false),
    });
    const throwOnError: Middleware = {
      async onResponse({ response }) {
        if (!response.ok) throw await BastionError.fromResponse(response);
        return undefined;
      },
    };
    this.api.use(throwOnError);
  }

  get baseUrl(): string {
    return this.#where.baseUrl;
  }

  /** How long one request of this client may take (ms). */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  /**
   * This client with another request deadline, for calls that wait on purpose:
   * `await ok(client.withTimeout(120_000).api.POST("/v1/services/{name}/{action}", ...))`.
   * It shares the token and where the daemon is with this one.
   */
  withTimeout(timeoutMs: number): BastionClient {
    const view = new BastionClient({ ...this.#options, timeoutMs });
    view.#where = this.#where;
    return view;
  }

  /**
   * One request with the token, within this client's deadline: past it the request is
   * aborted (its connection closed) and this rejects with `request_timeout`. The answer's
   * body is read within the deadline too, except a stream's (`stream`: its deadline ends
   * when its answer starts; sse.ts watches it after that).
   */
  async #send(request: Request, stream: boolean): Promise<Response> {
    const base = this.#where.baseUrl;
    if (base !== this.#apiBase && request.url.startsWith(`${this.#apiBase}/`)) {
      // The daemon moved since `api` was made (a restart on another port, rediscovered).
      request = new Request(base + request.url.slice(this.#apiBase.length), request);
    }
    const timeoutMs = this.#timeoutMs;
    const what = `${request.method} ${new URL(request.url).pathname}`;
    const deadline = new AbortController();
    const timer = setTimeout(() => {
      deadline.abort(
        new BastionError(
          "request_timeout",
          `the bastion daemon at ${this.#where.baseUrl} did not answer ${what} within ${timeoutMs} ms`,
          "It is stopped, hung or overloaded (its port accepts, nothing answers); a change may " +
            "still have been made. Show it as unresponsive and retry; if it stays so, restart it " +
            "(sidecar.stop(), spawnBastion). Calls that wait on purpose: client.withTimeout(ms).",
        ),
      );
    }, timeoutMs);
    const signal = AbortSignal.any([deadline.signal, request.signal]);
    try {
      const response = await this.#exchange(request, signal);
      if (stream || response.body === null) return response;
      // Read the whole answer now, while the deadline holds (openapi-fetch parses it later).
      const body = await response.arrayBuffer();
      const init = { status: response.status, statusText: response.statusText, headers: response.headers };
      return new Response(NULL_BODY_STATUS.has(response.status) ? null : body, init);
    } catch (err) {
      if (deadline.signal.aborted) throw deadline.signal.reason;
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The request with the token; a 401 re-reads the token once, a refused connection
   * re-reads where the daemon is once (`rediscover`). */
  async #exchange(request: Request, signal: AbortSignal): Promise<Response> {
    const attempt = async (req: Request, token: string): Promise<Response> => {
      const headers = new Headers(req.headers);
      headers.set("Authorization", `Bearer ${token}`);
      if (this.#origin !== undefined) headers.set("Origin", this.#origin);
      if (req.body === null && ["POST", "PUT", "PATCH"].includes(req.method)) {
        // Mutations must be JSON (the daemon's CSRF rule): an action without a body sends {}.
        headers.set("Content-Type", "application/json");
        return this.#fetch(new Request(req, { headers, body: "{}", signal }));
      }
      return this.#fetch(new Request(req, { headers, signal }));
    };
    const spare = request.clone();
    let response: Response;
    try {
      response = await attempt(request, await this.#tokens.get());
    } catch (err) {
      if (signal.aborted) throw signal.reason; // the deadline, or the caller's own signal
      const baseUrl = this.#where.baseUrl;
      const moved = this.#rediscover ? await this.#rediscover() : null;
      if (moved === null || moved === baseUrl) {
        throw new BastionError(
          "daemon_unreachable",
          `cannot reach the bastion daemon at ${baseUrl}`,
          "Is it running? Start it (spawnBastion) or check <home>/run/daemon.json.",
          0,
          { cause: err },
        );
      }
      const path = spare.url.slice(baseUrl.length);
      this.#where.baseUrl = moved.replace(/\/$/, "");
      return this.#exchange(new Request(this.#where.baseUrl + path, spare), signal);
    }
    if (response.status === 401 && this.#tokens.refresh) {
      const fresh = await this.#tokens.refresh();
      if (fresh !== null) {
        await response.body?.cancel();
        response = await attempt(spare, fresh);
      }
    }
    return response;
  }

  /** `GET /health` (no token needed): status, package version, API version. */
  async health(): Promise<Health> {
    return ok(this.api.GET("/health"));
  }

  /** Live log lines (`/v1/logs/stream`), resumed after `lastEventId`. */
  logs(options: LogStreamOptions = {}): AsyncGenerator<SseEvent<LogRecord>> {
    const { source, level, backlog, ...stream } = options;
    return this.#stream<LogRecord>("/v1/logs/stream", { source, level, backlog }, stream);
  }

  /** Live log lines of one service (`/v1/services/{name}/logs/stream`). */
  serviceLogs(name: string, options: Omit<LogStreamOptions, "source" | "level"> = {}): AsyncGenerator<SseEvent<LogRecord>> {
    const { backlog, ...stream } = options;
    return this.#stream<LogRecord>(`/v1/services/${encodeURIComponent(name)}/logs/stream`, { backlog }, stream);
  }

  /** Live events (`/v1/events/stream`): service transitions, backups, migrations, ... */
  events(options: EventStreamOptions = {}): AsyncGenerator<SseEvent<EventRecord>> {
    const { kind, subject, backlog, ...stream } = options;
    return this.#stream<EventRecord>("/v1/events/stream", { kind, subject, backlog }, stream);
  }

  #stream<T>(path: string, query: Record<string, string | number | undefined>, options: StreamOptions): AsyncGenerator<SseEvent<T>> {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined) params.set(key, String(value));
    }
    const qs = params.size > 0 ? `?${params}` : "";
    checkTimeout("idleTimeoutMs", options.idleTimeoutMs ?? STREAM_IDLE_TIMEOUT_MS);
    return sseStream<T>(async (lastEventId, signal) => {
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      if (lastEventId !== undefined) headers["Last-Event-ID"] = lastEventId;
      const response = await this.#send(new Request(`${this.#where.baseUrl}${path}${qs}`, { headers, signal }), true);
      if (!response.ok) throw await BastionError.fromResponse(response);
      return response;
    }, options);
  }
}

/** Statuses whose answer has no body (a `Response` refuses one). */
const NULL_BODY_STATUS = new Set([101, 204, 205, 304]);

/** A deadline option: a positive, finite number of milliseconds, else a `RangeError`. */
export function checkTimeout(name: string, ms: number): number {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms <= 0) {
    throw new RangeError(`${name} must be a positive number of milliseconds, got ${String(ms)}`);
  }
  return ms;
}

/** The data of an openapi-fetch call (which already threw a `BastionError` on an error). */
export async function ok<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, response } = await call;
  if (data === undefined) {
    throw new BastionError("api_error", `no body in the daemon's HTTP ${response.status} answer`);
  }
  return data;
}
