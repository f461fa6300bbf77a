/**
 * `@bastion/client`: a typed client for the bastion daemon, for Node and Electron main
 * processes. Spawn the daemon as a sidecar (`spawnBastion`) or attach to a running one
 * (`connectBastion`); call the API through `client.api` (types generated from the daemon's
 * OpenAPI); follow logs and events as async iterators. See docs/desktop.md.
 */
export { BastionClient, DEFAULT_TIMEOUT_MS, ok } from "./client.js";
export type {
  ApiClient,
  ClientOptions,
  EventRecord,
  EventStreamOptions,
  Health,
  LogRecord,
  LogStreamOptions,
  Schemas,
  ServiceStatus,
  TokenSource,
} from "./client.js";
export { BastionError } from "./errors.js";
export type { ClientErrorCode } from "./errors.js";
export { connectBastion, fileTokenSource, spawnBastion } from "./sidecar.js";
export type { ConnectOptions, Handshake, Sidecar, SpawnOptions } from "./sidecar.js";
export { STREAM_IDLE_TIMEOUT_MS } from "./sse.js";
export type { SseEvent, StreamOptions } from "./sse.js";
export { SUPPORTED_API_MAJORS, checkApiVersion } from "./version.js";
export type { components, paths } from "./schema.js";
