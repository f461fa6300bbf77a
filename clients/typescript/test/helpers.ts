/**
 * What every test shares: the daemon executable under test (BASTION_EXECUTABLE: the venv's
 * `bastion` or the standalone build), a fresh home per test, and waiting with a deadline.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { spawnBastion, type Sidecar, type SpawnOptions } from "../src/index.js";

export const EXECUTABLE = process.env.BASTION_EXECUTABLE ?? "";
if (EXECUTABLE === "") {
  throw new Error("set BASTION_EXECUTABLE to the bastion executable under test");
}

/** The encrypted-file vault, keyed from the environment: runs anywhere, no keychain needed. */
export function vaultEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const key of Object.keys(env)) if (key.startsWith("BASTION_")) delete env[key];
  return {
    ...env,
    BASTION_VAULT_BACKEND: "encrypted-file",
    BASTION_VAULT_KEY_SOURCE: "env",
    BASTION_VAULT_KEY: randomBytes(32).toString("base64"),
  };
}

export async function tempHome(): Promise<{ dir: string; home: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "bastion-ts-"));
  return { dir, home: join(dir, "home"), cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export type TestSidecar = Sidecar & { home: string; done: () => Promise<void> };

/** A daemon for one test, stopped (and its home removed) by `done()`. */
export async function sidecar(extra: Partial<SpawnOptions> = {}): Promise<TestSidecar> {
  const { home, cleanup } = await tempHome();
  const car = await spawnBastion({ home, executable: EXECUTABLE, env: vaultEnv(), ...extra });
  return {
    ...car,
    home,
    done: async () => {
      await car.stop();
      await cleanup();
    },
  };
}

export async function until<T>(check: () => Promise<T | undefined | null | false>, what: string, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Whether `pid` runs (a zombie, exited but not yet reaped, does not). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] !== "Z";
  } catch {
    return false;
  }
}
