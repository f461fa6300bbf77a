/**
 * The typed client: `openapi-fetch` over the daemon's generated OpenAPI types, with the
 * bearer token added to every request, error answers thrown as `BastionError`, and the SSE
 * routes as async iterators.
 *
 * The token comes from a `TokenSource`: after a daemon restart with a new token, a 401 makes
 * the client ask the source again (it re-reads `run/token`) and retry that request once.
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";

import { BastionError } from "./errors.js";
import type { components, paths } from "./schema.js";
import { sseStream, type SseEvent, type StreamOptions } from "./sse.js";

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
}

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
   * error answer rejects with a `BastionError`; `data` is then always set (see `ok`). */
  readonly api: ApiClient;
  #baseUrl: string;
  readonly #tokens: TokenSource;
  readonly #origin: string | undefined;
  readonly #rediscover: (() => Promise<string | null>) | undefined;
  readonly #fetch: typeof globalThis.fetch;

  constructor(options: ClientOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/$/, "");
    const token = options.token;
    this.#tokens = typeof token === "string" ? { get: async () => token } : token;
    this.#origin = options.origin;
    this.#rediscover = options.rediscover;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.api = createClient<paths>({
      baseUrl: this.#baseUrl,
      fetch: (request: Request) => this.#send(request),
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
    return this.#baseUrl;
  }

  /** One request with the token; a 401 re-reads the token once, a refused connection
   * re-reads where the daemon is once (`rediscover`). */
  async #send(request: Request): Promise<Response> {
    const attempt = async (req: Request, token: string): Promise<Response> => {
      const headers = new Headers(req.headers);
      headers.set("Authorization", `Bearer ${token}`);
      if (this.#origin !== undefined) headers.set("Origin", this.#origin);
      if (req.body === null && ["POST", "PUT", "PATCH"].includes(req.method)) {
        // Mutations must be JSON (the daemon's CSRF rule): an action without a body sends {}.
        headers.set("Content-Type", "application/json");
        return this.#fetch(new Request(req, { headers, body: "{}" }));
      }
      return this.#fetch(new Request(req, { headers }));
    };
    const spare = request.clone();
    let response: Response;
    try {
      response = await attempt(request, await this.#tokens.get());
    } catch (err) {
      const moved = this.#rediscover ? await this.#rediscover() : null;
      if (moved === null || moved === this.#baseUrl) {
        throw new BastionError(
          "daemon_unreachable",
          `cannot reach the bastion daemon at ${this.#baseUrl}`,
          "Is it running? Start it (spawnBastion) or check <home>/run/daemon.json.",
          0,
          { cause: err },
        );
      }
      const path = spare.url.slice(this.#baseUrl.length);
      this.#baseUrl = moved.replace(/\/$/, "");
      return this.#send(new Request(this.#baseUrl + path, spare));
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
    return sseStream<T>(async (lastEventId, signal) => {
      const headers: Record<string, string> = { Accept: "text/event-stream" };
      if (lastEventId !== undefined) headers["Last-Event-ID"] = lastEventId;
      const response = await this.#send(new Request(`${this.#baseUrl}${path}${qs}`, { headers, signal }));
      if (!response.ok) throw await BastionError.fromResponse(response);
      return response;
    }, options);
  }
}

/** The data of an openapi-fetch call (which already threw a `BastionError` on an error). */
export async function ok<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, response } = await call;
  if (data === undefined) {
    throw new BastionError("api_error", `no body in the daemon's HTTP ${response.status} answer`);
  }
  return data;
}
