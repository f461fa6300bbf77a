/**
 * The HTTP API version this client speaks. The daemon says its own in the handshake line and
 * `GET /health` (`api_version`, semver); a daemon of another major is refused before any
 * request, with a message naming both.
 */
import { BastionError } from "./errors.js";

/** API majors this client was generated against and works with. */
export const SUPPORTED_API_MAJORS: readonly number[] = [1];

export function supportedRange(): string {
  return SUPPORTED_API_MAJORS.map((m) => `${m}.x`).join(", ");
}

/** Throws `api_version_unsupported` unless `apiVersion` has a supported major. */
export function checkApiVersion(apiVersion: string | undefined | null): void {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(apiVersion ?? "");
  const major = match ? Number(match[1]) : NaN;
  if (!SUPPORTED_API_MAJORS.includes(major)) {
    const got = apiVersion ? `API ${apiVersion}` : "an API version older than the api_version field";
    throw new BastionError(
      "api_version_unsupported",
      `the bastion daemon speaks ${got}; this client supports API ${supportedRange()}`,
      `Use a @bastion/client release made for that API major, or a bastion daemon whose API is ${supportedRange()}.`,
    );
  }
}
