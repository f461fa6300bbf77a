/** spawnBastion / connectBastion: handshake, token, restart, version refusal, parent death. */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { createServer, type AddressInfo, type Socket } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { BastionError, connectBastion, ok, spawnBastion } from "../src/index.js";
import { EXECUTABLE, alive, sidecar, tempHome, until, vaultEnv } from "./helpers.js";

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

test("connectBastion attaches through run/daemon.json and run/token", async () => {
  const { home, cleanup } = await tempHome();
  const car = await spawnBastion({ home, executable: EXECUTABLE, env: vaultEnv() });
  try {
    const client = await connectBastion({ home });
    assert.equal(client.baseUrl, car.handshake.url);
    await ok(client.api.PUT("/v1/settings/{key}", { params: { path: { key: "k" } }, body: { value: 1 } }));
    const setting = await ok(car.client.api.GET("/v1/settings/{key}", { params: { path: { key: "k" } } }));
    assert.equal(setting.value, 1);
  } finally {
    assert.equal(await car.stop(), 0); // SIGTERM: a graceful stop, exit status 0
    assert.ok(!existsSync(join(home, "run", "daemon.json")));
    await assert.rejects(connectBastion({ home }), (err: unknown) => err instanceof BastionError && err.code === "daemon_not_running");
    await cleanup();
  }
});

test("a handshake a killed daemon left sends no token to what holds its port now", async () => {
  // kill -9 leaves run/daemon.json behind; its pid may be alive again as another program
  // (here: this test's own process) and its port another program's server.
  const { home, cleanup } = await tempHome();
  const car = await spawnBastion({ home, executable: EXECUTABLE, env: vaultEnv() });
  const left = JSON.parse(await readFile(join(home, "run", "daemon.json"), "utf8"));
  await car.stop();
  const other = await sidecar();
  const heard: (string | undefined)[] = [];
  const stranger = createHttpServer((req, res) => {
    heard.push(req.headers.authorization);
    res.writeHead(200, { "content-type": "application/json" }).end('{"ok": true}');
  });
  await new Promise<void>((resolve) => stranger.listen(0, "127.0.0.1", resolve));
  const strangerPort = (stranger.address() as AddressInfo).port;
  const leave = (port: number) =>
    writeFile(join(home, "run", "daemon.json"), JSON.stringify({ ...left, pid: process.pid, port, url: `http://127.0.0.1:${port}` }));
  try {
    await leave(strangerPort);
    await assert.rejects(connectBastion({ home }), (err: unknown) => {
      assert.ok(err instanceof BastionError);
      assert.equal(err.code, "daemon_not_running");
      assert.match(err.message, /another program answers there/);
      return true;
    });
    assert.deepEqual(heard, [undefined]); // asked once, without the token
    await leave(other.handshake.port); // another home's daemon: a bastion, not this one
    await assert.rejects(connectBastion({ home }), (err: unknown) => {
      assert.ok(err instanceof BastionError);
      assert.equal(err.code, "daemon_not_running");
      assert.match(err.message, new RegExp(`another bastion daemon \\(pid ${other.handshake.pid}\\)`));
      return true;
    });
  } finally {
    stranger.close();
    await other.done();
    await cleanup();
  }
});

test("a daemon of another API major is refused, naming what is supported", async () => {
  const { home, cleanup } = await tempHome();
  const car = await spawnBastion({ home, executable: EXECUTABLE, env: vaultEnv() });
  try {
    const path = join(home, "run", "daemon.json");
    const real = await readFile(path, "utf8");
    await writeFile(path, JSON.stringify({ ...JSON.parse(real), api_version: "2.0.0" }));
    await assert.rejects(connectBastion({ home }), (err: unknown) => {
      assert.ok(err instanceof BastionError);
      assert.equal(err.code, "api_version_unsupported");
      assert.match(err.message, /API 2\.0\.0/);
      assert.match(err.message, /supports API 1\.x/);
      return true;
    });
    await writeFile(path, real);
  } finally {
    await car.stop();
    await cleanup();
  }
});

test("after a daemon restart with a new token, a 401 re-reads the token once", async () => {
  const { home, cleanup } = await tempHome();
  const env = vaultEnv();
  const port = await freePort();
  let car = await spawnBastion({ home, executable: EXECUTABLE, env, port });
  const client = await connectBastion({ home });
  await ok(client.api.GET("/v1/settings"));
  const oldToken = await readFile(join(home, "run", "token"), "ascii");
  await car.stop();
  await rm(join(home, "run", "token")); // the next start creates a new one
  car = await spawnBastion({ home, executable: EXECUTABLE, env, port });
  try {
    assert.notEqual(await readFile(join(home, "run", "token"), "ascii"), oldToken);
    const page = await ok(client.api.GET("/v1/settings"));
    assert.deepEqual(page.items, []);
  } finally {
    await car.stop();
    await cleanup();
  }
});

test("after a restart on another port, connectBastion's client finds the daemon again", async () => {
  const { home, cleanup } = await tempHome();
  const env = vaultEnv();
  let car = await spawnBastion({ home, executable: EXECUTABLE, env });
  const client = await connectBastion({ home });
  const before = client.baseUrl;
  await car.stop();
  car = await spawnBastion({ home, executable: EXECUTABLE, env, port: await freePort() });
  try {
    await ok(client.api.GET("/v1/settings"));
    assert.notEqual(client.baseUrl, before);
    assert.equal(client.baseUrl, car.handshake.url);
    // Later calls (and a client withTimeout made) go to where it is now, not to the old port.
    await ok(client.api.GET("/v1/settings"));
    await ok(client.withTimeout(5_000).api.GET("/v1/settings"));
  } finally {
    await car.stop();
    await cleanup();
  }
});

test("a sidecar that exits or stays silent is a BastionError, not a hang", async () => {
  const { dir, home, cleanup } = await tempHome();
  try {
    const silent = join(dir, "silent.sh");
    await writeFile(silent, "#!/bin/sh\necho 'starting...' >&2\nexec sleep 60\n");
    await chmod(silent, 0o755);
    await assert.rejects(
      spawnBastion({ home, executable: silent, handshakeTimeoutMs: 500 }),
      (err: unknown) => err instanceof BastionError && err.code === "sidecar_timeout" && /starting\.\.\./.test(err.message),
    );
    const failing = join(dir, "failing.sh");
    await writeFile(failing, "#!/bin/sh\necho 'no such home' >&2\nexit 3\n");
    await chmod(failing, 0o755);
    await assert.rejects(
      spawnBastion({ home, executable: failing }),
      (err: unknown) => err instanceof BastionError && err.code === "sidecar_exited" && /no such home/.test(err.message),
    );
    await assert.rejects(
      spawnBastion({ home, executable: join(dir, "missing") }),
      (err: unknown) => err instanceof BastionError && err.code === "sidecar_exited",
    );
  } finally {
    await cleanup();
  }
});

test("the sidecar dies with the Node process that spawned it (kill -9)", async () => {
  const { home, cleanup } = await tempHome();
  const app = spawn(process.execPath, [fileURLToPath(new URL("./fixtures/app.js", import.meta.url)), home, EXECUTABLE], {
    env: vaultEnv(),
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let buffered = "";
      app.stdout.setEncoding("utf8");
      app.stdout.on("data", (text: string) => {
        buffered += text;
        if (buffered.includes("\n")) resolve(buffered.split("\n")[0] ?? "");
      });
      app.once("exit", (code) => reject(new Error(`the app exited (${code}) before the handshake`)));
    });
    const { pid } = JSON.parse(line) as { pid: number };
    assert.ok(alive(pid));
    app.kill("SIGKILL");
    await until(async () => !alive(pid), "the daemon to follow its app", 30_000);
    assert.ok(!existsSync(join(home, "run", "daemon.json"))); // it stopped the graceful way
  } finally {
    app.kill("SIGKILL");
    await cleanup();
  }
});

test("a Tauri web view's origin is accepted once allowed_origins names it", async () => {
  const { home, cleanup } = await tempHome();
  const env = { ...vaultEnv(), BASTION_API_ALLOWED_ORIGINS: "tauri://localhost,http://tauri.localhost" };
  const car = await spawnBastion({ home, executable: EXECUTABLE, env, origin: "http://tauri.localhost" });
  try {
    const { response } = await car.client.api.GET("/v1/settings");
    assert.equal(response.status, 200);
    assert.equal(response.headers.get("access-control-allow-origin"), "http://tauri.localhost");
    const other = await spawnBastion({ home: `${home}-2`, executable: EXECUTABLE, env: vaultEnv(), origin: "tauri://localhost" });
    try {
      await assert.rejects(other.client.api.GET("/v1/settings"), (err: unknown) => err instanceof BastionError && err.status === 403);
    } finally {
      await other.stop();
    }
  } finally {
    await car.stop();
    await cleanup();
  }
});

test("a port that accepts but never answers fails connectBastion within confirmTimeoutMs", async () => {
  // A daemon stopped with SIGSTOP (or hung) keeps its port: the kernel accepts, nobody answers.
  const { home, cleanup } = await tempHome();
  const held: Socket[] = [];
  const silent = createServer((socket) => {
    held.push(socket); // read nothing, answer nothing, close nothing
  });
  await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
  const port = (silent.address() as AddressInfo).port;
  await mkdir(join(home, "run"), { recursive: true });
  const handshake = {
    pid: process.pid, // alive: not a stale file
    port,
    url: `http://127.0.0.1:${port}`,
    version: "0.1.0",
    api_version: "1.1.0",
    started_at: new Date().toISOString(),
    hosts: ["127.0.0.1"],
  };
  await writeFile(join(home, "run", "daemon.json"), JSON.stringify(handshake));
  try {
    await assert.rejects(connectBastion({ home, confirmTimeoutMs: 200 }), (err: unknown) => {
      assert.ok(err instanceof BastionError);
      assert.equal(err.code, "daemon_unreachable");
      assert.match(err.message, new RegExp(`accepts at http://127\\.0\\.0\\.1:${port} but did not answer GET /health within 200 ms`));
      assert.match(err.hint, /confirmTimeoutMs/);
      return true;
    });
    assert.equal(held.length, 1); // it connected: the timeout, not a refusal, ended it
    await assert.rejects(connectBastion({ home, confirmTimeoutMs: 0 }), RangeError);
  } finally {
    for (const socket of held) socket.destroy();
    silent.close();
    await cleanup();
  }
});
