/** Deadlines: a daemon whose port accepts but never answers (stopped, hung) fails each call
 * with `request_timeout` and closes the connection; a stream's opening and silence are bounded. */
import assert from "node:assert/strict";
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { test } from "node:test";

import { BastionClient, BastionError, connectBastion, ok } from "../src/index.js";
import { sidecar, tempHome, until } from "./helpers.js";

/** Without a deadline these calls waited forever: fail the test instead of hanging the suite. */
const GUARD = { timeout: 60_000 };

/** Requests a server received on its connections, and whether the client closed each one. */
class Connections {
  readonly sockets: Socket[] = [];
  readonly requests: { socket: Socket; closed: boolean }[] = [];

  watch(socket: Socket): void {
    this.sockets.push(socket);
    // Counted once a request arrives: undici may open a spare connection after an abort,
    // which it closes itself when idle (its keep-alive timeout).
    socket.once("data", () => {
      const request = { socket, closed: socket.destroyed };
      this.requests.push(request);
      socket.once("close", () => (request.closed = true));
    });
  }

  /** Connections that carried a request and are still open. */
  open(): number {
    return this.requests.filter((r) => !r.closed).length;
  }

  destroy(): void {
    for (const socket of this.sockets) socket.destroy();
  }
}

/** A port that accepts and never answers (what a SIGSTOPped daemon's port does). */
async function silentPort(): Promise<{ url: string; seen: Connections; close: () => void }> {
  const seen = new Connections();
  const server: Server = createServer((socket) => seen.watch(socket)); // read nothing, answer nothing
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => {
      seen.destroy();
      server.close();
    },
  };
}

function isTimeout(method: string, path: string, ms: number) {
  return (err: unknown) => {
    assert.ok(err instanceof BastionError, String(err));
    assert.equal(err.code, "request_timeout");
    assert.equal(err.status, 0);
    assert.match(err.message, new RegExp(`did not answer ${method} ${path} within ${ms} ms`));
    assert.match(err.hint, /unresponsive/);
    return true;
  };
}

test("a port that accepts and never answers: the call rejects with request_timeout and its connection is closed", GUARD, async () => {
  const port = await silentPort();
  try {
    const client = new BastionClient({ baseUrl: port.url, token: "t", timeoutMs: 200 });
    await assert.rejects(ok(client.api.GET("/v1/settings")), isTimeout("GET", "/v1/settings", 200));
    assert.equal(port.seen.requests.length, 1); // it was sent: the deadline, not a refusal, ended it
    await until(async () => port.seen.open() === 0, "the client to close the connection", 10_000);
    // A longer (or shorter) deadline for one call; the client's own stays as it was.
    const slow = client.withTimeout(300);
    await assert.rejects(
      ok(slow.api.POST("/v1/services/{name}/{action}", { params: { path: { name: "db", action: "stop" } } })),
      isTimeout("POST", "/v1/services/db/stop", 300),
    );
    assert.equal(client.timeoutMs, 200);
    assert.equal(slow.timeoutMs, 300);
    await assert.rejects(client.health(), isTimeout("GET", "/health", 200));
    assert.equal(port.seen.requests.length, 3);
    await until(async () => port.seen.open() === 0, "the client to close every connection", 10_000);
  } finally {
    port.close();
  }
});

test("a caller's own signal still aborts a call, with its own reason", GUARD, async () => {
  const port = await silentPort();
  try {
    const client = new BastionClient({ baseUrl: port.url, token: "t" });
    const mine = new AbortController();
    const call = client.api.GET("/v1/settings", { signal: mine.signal });
    await until(async () => port.seen.requests.length === 1, "the request to arrive", 10_000);
    mine.abort(new Error("the window closed"));
    await assert.rejects(call, /the window closed/);
    await until(async () => port.seen.open() === 0, "the client to close the connection", 10_000);
  } finally {
    port.close();
  }
});

test("deadline options must be positive numbers of milliseconds (RangeError)", async () => {
  const baseUrl = "http://127.0.0.1:9";
  for (const bad of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => new BastionClient({ baseUrl, token: "t", timeoutMs: bad }), RangeError);
  }
  const client = new BastionClient({ baseUrl, token: "t" });
  assert.equal(client.timeoutMs, 30_000);
  assert.throws(() => client.withTimeout(0), RangeError);
  assert.throws(() => client.events({ idleTimeoutMs: -5 }), RangeError);
  const { home, cleanup } = await tempHome();
  try {
    await assert.rejects(connectBastion({ home, timeoutMs: 0 }), RangeError); // before it looks for a daemon
  } finally {
    await cleanup();
  }
});

test("a real daemon stopped with SIGSTOP: the call rejects; after SIGCONT the next call works", GUARD, async () => {
  const car = await sidecar();
  const pid = car.handshake.pid; // the daemon itself (under the one-file build too)
  try {
    await ok(car.client.api.PUT("/v1/settings/{key}", { params: { path: { key: "k" } }, body: { value: 1 } }));
    process.kill(pid, "SIGSTOP");
    await assert.rejects(ok(car.client.withTimeout(500).api.GET("/v1/settings/{key}", { params: { path: { key: "k" } } })), isTimeout("GET", "/v1/settings/k", 500));
    process.kill(pid, "SIGCONT");
    const setting = await ok(car.client.api.GET("/v1/settings/{key}", { params: { path: { key: "k" } } }));
    assert.equal(setting.value, 1);
  } finally {
    process.kill(pid, "SIGCONT"); // a stopped daemon would not stop on SIGTERM
    await car.done();
  }
});

test("a stream whose server never sends its first byte: each opening times out, then stream_lost", GUARD, async () => {
  const port = await silentPort();
  try {
    const client = new BastionClient({ baseUrl: port.url, token: "t", timeoutMs: 200 });
    const events = client.events({ maxReconnects: 1, retryMs: 10 });
    await assert.rejects(events.next(), (err: unknown) => {
      assert.ok(err instanceof BastionError);
      assert.equal(err.code, "stream_lost");
      assert.match(err.message, /could not be opened \(2 attempts\): .*did not answer GET \/v1\/events\/stream within 200 ms/);
      assert.ok(err.cause instanceof BastionError && err.cause.code === "request_timeout");
      return true;
    });
    assert.equal(port.seen.requests.length, 2); // the opening and one reconnect
    await until(async () => port.seen.open() === 0, "the client to close both connections", 10_000);
  } finally {
    port.close();
  }
});

test("a stream that goes silent is closed after idleTimeoutMs and resumed from its last event", GUARD, async () => {
  // The daemon sends a keep-alive every 10 s on an idle stream: silence means stopped or hung.
  const asked: (string | undefined)[] = [];
  const connections = new Connections();
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    asked.push(req.headers["last-event-id"] as string | undefined);
    if (asked.length > 1) return; // the reopening: accepted, never answered (still stopped)
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.write(': stream open\n\nid: 7\nevent: event\ndata: {"id": 7}\n\n'); // then nothing
  });
  server.on("connection", (socket: Socket) => connections.watch(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const client = new BastionClient({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: "t", timeoutMs: 200 });
    const seen: string[] = [];
    await assert.rejects(
      (async () => {
        for await (const event of client.events({ idleTimeoutMs: 200, maxReconnects: 0, retryMs: 10 })) seen.push(String(event.id));
      })(),
      (err: unknown) => err instanceof BastionError && err.code === "stream_lost",
    );
    assert.deepEqual(seen, ["7"]);
    assert.deepEqual(asked, [undefined, "7"]); // reopened after its last event
    assert.equal(connections.requests.length, 2);
    await until(async () => connections.open() === 0, "the client to close both connections", 10_000);
  } finally {
    connections.destroy();
    server.close();
  }
});
