/** The typed client against a real daemon: settings, secrets, services, errors, refusals. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { after, before, describe, test } from "node:test";

import { BastionClient, BastionError, ok } from "../src/index.js";
import { sidecar, type TestSidecar } from "./helpers.js";

describe("a spawned daemon", () => {
  let car: TestSidecar;
  before(async () => {
    car = await sidecar();
  });
  after(async () => {
    await car?.done();
  });

  test("the handshake and /health carry the API version", async () => {
    assert.match(car.handshake.api_version, /^1\.\d+\.\d+$/);
    const health = await car.client.health();
    assert.equal(health.status, "ok");
    assert.equal(health.api_version, car.handshake.api_version);
  });

  test("settings round trip", async () => {
    const { api } = car.client;
    const key = "ui.theme";
    const put = await ok(api.PUT("/v1/settings/{key}", { params: { path: { key } }, body: { value: { dark: true, size: 3 } } }));
    assert.deepEqual(put.value, { dark: true, size: 3 });
    const got = await ok(api.GET("/v1/settings/{key}", { params: { path: { key } } }));
    assert.deepEqual(got.value, { dark: true, size: 3 });
  });

  test("a secret is set and listed, its value never in the list", async () => {
    const { api } = car.client;
    const value = "sk-ts-client-0123456789";
    await ok(api.PUT("/v1/secrets/{name}", { params: { path: { name: "openai" } }, body: { value } }));
    const listed = await ok(api.GET("/v1/secrets"));
    assert.deepEqual(
      listed.items.map((s) => s.name),
      ["openai"],
    );
    assert.ok(!JSON.stringify(listed).includes(value));
    const info = await ok(api.GET("/v1/secrets/{name}", { params: { path: { name: "openai" } } }));
    assert.ok(!JSON.stringify(info).includes(value));
  });

  test("an error's code and hint", async () => {
    await assert.rejects(car.client.api.GET("/v1/services/{name}", { params: { path: { name: "no-such" } } }), (err: unknown) => {
      assert.ok(err instanceof BastionError);
      assert.equal(err.code, "service_not_found");
      assert.equal(err.status, 404);
      assert.match(err.message, /no-such/);
      assert.ok(err.hint.length > 0);
      return true;
    });
    await assert.rejects(
      car.client.api.PUT("/v1/services/{name}", {
        params: { path: { name: "bad" } },
        body: { argv: ["/bin/sh"], restart: { policy: "sometimes" } },
      }),
      (err: unknown) =>
        err instanceof BastionError && err.code === "service_spec_invalid" && /restart\.policy/.test(err.message) && /Use one of/.test(err.hint),
    );
  });

  test("a service: declared, started, its logs streamed and resumed, stopped", async () => {
    const { api } = car.client;
    const script = 'i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.1; done';
    const name = "ticker";
    await ok(api.PUT("/v1/services/{name}", { params: { path: { name } }, body: { argv: ["/bin/sh", "-c", script], autostart: false } }));
    const started = await ok(api.POST("/v1/services/{name}/{action}", { params: { path: { name, action: "start" } } }));
    assert.ok(["starting", "running"].includes(started.state));
    const seen: string[] = [];
    let lastId: string | undefined;
    for await (const event of car.client.serviceLogs(name)) {
      seen.push(event.data.message);
      lastId = event.id;
      if (seen.length === 3) break; // leaving the loop closes the stream
    }
    assert.equal(seen.length, 3);
    assert.ok(seen.every((m) => /^tick \d+$/.test(m)));
    // Resumed after the last id: the very next line, nothing repeated.
    const resumed = car.client.serviceLogs(name, { lastEventId: lastId });
    const next = await resumed.next();
    await resumed.return(undefined);
    assert.ok(next.value !== undefined && Number(next.value.id) > Number(lastId));
    assert.equal(Number(next.value.data.message.split(" ")[1]), Number(seen[2]?.split(" ")[1]) + 1);
    const stopped = await ok(api.POST("/v1/services/{name}/{action}", { params: { path: { name, action: "stop" } } }));
    assert.equal(stopped.state, "stopped");
  });

  test("events stream as an async iterator", async () => {
    const { api } = car.client;
    const name = "evented";
    await ok(api.PUT("/v1/services/{name}", { params: { path: { name } }, body: { argv: ["/bin/sh", "-c", "sleep 60"], autostart: false } }));
    await ok(api.POST("/v1/services/{name}/{action}", { params: { path: { name, action: "start" } } }));
    // The transitions are rows by now: a backlog brings them, the stream goes on after them.
    const stream = car.client.events({ subject: name, kind: "service.transition", backlog: 10 });
    const event = await stream.next();
    await stream.return(undefined);
    assert.equal(event.value?.data.subject, name);
    assert.equal(event.value?.data.kind, "service.transition");
  });

  test("a foreign Origin and a foreign Host are refused", async () => {
    const token = readFileSync(`${car.home}/run/token`, "ascii").trim();
    const foreign = new BastionClient({ baseUrl: car.handshake.url, token, origin: "https://evil.example" });
    await assert.rejects(foreign.api.GET("/v1/settings"), (err: unknown) => {
      assert.ok(err instanceof BastionError);
      assert.equal(err.status, 403);
      assert.match(`${err.code} ${err.message}`, /origin/i);
      return true;
    });
    // DNS rebinding sends the attacker's host name: refused before any route runs.
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const headers = { Host: `evil.example:${car.handshake.port}`, Authorization: `Bearer ${token}` };
      const req = request({ host: "127.0.0.1", port: car.handshake.port, path: "/v1/settings", headers }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (text: string) => (body += text));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      req.end();
    });
    assert.equal(answer.status, 403);
    assert.match(answer.body, /host/i);
  });
});
