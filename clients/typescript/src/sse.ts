/**
 * Server-sent events as async iterators (over `eventsource-parser`), resumed with
 * `Last-Event-ID` after a dropped connection: the daemon's ids are increasing row ids, so a
 * resumed stream continues right after the last event seen, nothing lost, nothing repeated.
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
}

/** `open(lastEventId, signal)` makes one request; it throws a BastionError for an error answer. */
export type Opener = (lastEventId: string | undefined, signal: AbortSignal) => Promise<Response>;

export async function* sseStream<T>(open: Opener, options: StreamOptions = {}): AsyncGenerator<SseEvent<T>> {
  const reconnect = options.reconnect ?? true;
  const maxReconnects = options.maxReconnects ?? 5;
  let retryMs = options.retryMs ?? 500;
  let lastEventId = options.lastEventId;
  let failures = 0;
  const abort = new AbortController();
  const onOuterAbort = () => abort.abort();
  options.signal?.addEventListener("abort", onOuterAbort, { once: true });
  try {
    while (!abort.signal.aborted) {
      let response: Response;
      try {
        response = await open(lastEventId, abort.signal);
      } catch (err) {
        if (abort.signal.aborted) return;
        if (err instanceof BastionError && err.status !== 0 && err.status !== 503) throw err;
        if (!reconnect || ++failures > maxReconnects) {
          throw new BastionError(
            "stream_lost",
            `the event stream could not be reopened after ${failures} attempts`,
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
          try {
            chunk = await reader.read();
          } catch {
            break; // the connection dropped: reconnect below
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
