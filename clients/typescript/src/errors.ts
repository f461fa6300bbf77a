/**
 * The daemon's errors as one class. Every error the API answers is `{code, message, hint}`
 * (see docs/errors.md for the codes); the client's own failures (a sidecar that printed no
 * handshake, a daemon of another API major, a lost stream, a request past its deadline) use
 * the same shape with codes of their own, listed in `ClientErrorCode`.
 */

/** Codes raised by the client itself, not answered by the daemon. */
export type ClientErrorCode =
  | "api_version_unsupported"
  | "sidecar_exited"
  | "sidecar_timeout"
  | "daemon_not_running"
  | "daemon_unreachable"
  | "request_timeout"
  | "stream_lost";

export class BastionError extends Error {
  /** Stable error code: the daemon's (docs/errors.md) or a `ClientErrorCode`. */
  readonly code: string;
  /** What to do about it. */
  readonly hint: string;
  /** The HTTP status the daemon answered (0 for the client's own errors). */
  readonly status: number;

  constructor(code: string, message: string, hint = "", status = 0, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BastionError";
    this.code = code;
    this.hint = hint;
    this.status = status;
  }

  /** The error a non-2xx response stands for (its body is read). */
  static async fromResponse(response: Response): Promise<BastionError> {
    let body: unknown = undefined;
    const text = await response.text().catch(() => "");
    try {
      body = text ? JSON.parse(text) : undefined;
    } catch {
      body = undefined;
    }
    if (isErrorBody(body)) {
      return new BastionError(body.code, body.message, body.hint ?? "", response.status);
    }
    return new BastionError(
      "api_error",
      `the daemon answered HTTP ${response.status} ${response.statusText}`.trim(),
      "",
      response.status,
    );
  }
}

function isErrorBody(value: unknown): value is { code: string; message: string; hint?: string } {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.code === "string" && typeof v.message === "string";
}
