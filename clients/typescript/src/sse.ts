/**
 * Server-sent events as async iterators (over `eventsource-parser`), resumed with
 * `Last-Event-ID` after a dropped connection: the daemon's ids are increasing row ids, so a
 * resumed stream continues right after the last event seen, nothing lost, nothing repeated.
 *
 * A stream has no total deadline (it is long-lived by design). Its opening has the client's
 * request deadline (`timeoutMs`: until the answer starts); after that the daemon sends
 * something at least every 10 s (a keep-alive comment when idle), so a connection silent for
 * `idleTimeoutMs` is stalled (a stopped or hung daemon): it is closed and reopened like a
 * dropped one, and after `maxReconnects` failed reopenings the stream ends with `stream_lost`.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser";

import { BastionError } from "./errors.js";

export interface SseEvent<T> {
  /** The event's id (a row id): pass it back as `lastEventId` to resume after it. */
  id: string | undefined;
  /** `log`, `event` or `activity`. */
  event: string | undefined;
  data: T;
}

export interface StreamOptions {
  /** Resume after this event id (what a previous stream's last event carried). */
  lastEventId?: string;
  /** Ends the stream (the iterator returns). Breaking out of `for await` does the same. */
  signal?: AbortSignal;
  /** Reconnect (with `Last-Event-ID`) when the connection drops; default true. */
  reconnect?: boolean;
  /** Consecutive failed reconnects before giving up with `stream_lost`; default 5. */
  maxReconnects?: number;
  /** Wait before a reconnect (ms); the server's `retry:` field overrides it; default 500. */
  retryMs?: number;
  /**
   * A connection that brings nothing for this long is stalled: it is closed and the stream
   * reconnects (or ends, with `reconnect: false`). Default 30 000 ms: three of the daemon's
   * keep-alive intervals (10 s).
   */
  idleTimeoutMs?: number;
}

/** How long an open stream may bring nothing: three of the daemon's keep-alives (`HEARTBEAT_S`). */
export const STREAM_IDLE_TIMEOUT_MS = 30_000;

/** `open(lastEventId, signal)` makes one request; it throws a BastionError for an error answer. */
export type Opener = (lastEventId: string | undefined, signal: AbortSignal) => Promise<Response>;

export async function* sseStream<T>(open: Opener, options: StreamOptions = {}): AsyncGenerator<SseEvent<T>> {
  const reconnect = options.reconnect ?? true;
  const maxReconnects = options.maxReconnects ?? 5;
  let retryMs = options.retryMs ?? 500;
  const idleTimeoutMs = options.idleTimeoutMs ?? STREAM_IDLE_TIMEOUT_MS;
  let lastEventId = options.lastEventId;
  let failures = 0;
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort();
  options.signal?.addEventListener("abort", onOuterAbort, { once: true });
  try {
    while (!abort.signal.aborted) {
      // This connection's own abort: a stalled connection is closed, the stream goes on.
      const connection = new AbortController();
      let response: Response;
      try {
        response = await open(lastEventId, AbortSignal.any([abort.signal, connection.signal]));
      } catch (err) {
        if (abort.signal.aborted) return;
        if (err instanceof BastionError && err.status !== 0 && err.status !== 503) throw err;
        failures += 1;
        if (!reconnect || failures > maxReconnects) {
          const why = err instanceof Error ? `: ${err.message}` : "";
          throw new BastionError(
            "stream_lost",
            `the event stream could not be opened (${failures} attempt${failures === 1 ? "" : "s"})${why}`,
            "Check that the daemon still runs; open the stream again with the last event id.",
            0,
            { cause: err },
          );
        }
        await delay(retryMs, abort.signal);
        continue;
      }
      failures = 0;
      const queue: EventSourceMessage[] = [];
      const parser = createParser({
        onEvent: (message) => queue.push(message),
        onRetry: (ms) => {
          retryMs = ms;
        },
      });
      const body = response.body;
      if (body === null) return;
      const decoder = new TextDecoder();
      const reader = body.getReader();
      try {
        for (;;) {
          let chunk: Awaited<ReturnType<typeof reader.read>>;
          const stalled = setTimeout(() => connection.abort(), idleTimeoutMs);
          try {
            chunk = await reader.read();
          } catch {
            break; // the connection dropped, or stalled and was closed: reconnect below
          } finally {
            clearTimeout(stalled);
          }
          if (chunk.done) break;
          parser.feed(decoder.decode(chunk.value, { stream: true }));
          while (queue.length > 0) {
            const message = queue.shift() as EventSourceMessage;
            if (message.id !== undefined) lastEventId = message.id;
            yield { id: message.id, event: message.event, data: JSON.parse(message.data) as T };
          }
        }
      } finally {
        reader.releaseLock();
        await body.cancel().catch(() => undefined);
      }
      if (!reconnect || abort.signal.aborted) return;
      await delay(retryMs, abort.signal);
    }
  } finally {
    options.signal?.removeEventListener("abort", onOuterAbort);
    abort.abort(); // a consumer that stopped iterating closes the connection
  }
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}
