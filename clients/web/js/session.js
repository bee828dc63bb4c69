// Who is signed in. A token arrives once, in the URL fragment (#token=…: `make run`'s
// links, the organiser's links) or from redeeming a code; it is kept in sessionStorage
// (this tab only, gone when the tab closes) and removed from the address bar at once, so
// it is not bookmarked, shared or sent anywhere. Fragments never reach a server or its logs.

const TOKEN_KEY = "hybridcon.token";
const DEVICE_KEY = "hybridcon.device";
const CHECKIN_KEY = "hybridcon.checkin";

/**
 * The on-site session (workshop, walk) this tab checked in to by scanning its code; with
 * an id, remember it.
 * @param {string} [id]
 * @returns {string|null}
 */
export function checkedIn(id) {
  if (id) sessionStorage.setItem(CHECKIN_KEY, id);
  return sessionStorage.getItem(CHECKIN_KEY);
}

/**
 * Move a token or code from the fragment into storage and clean the address bar.
 * @returns {{code: string|null}} an invite or hall code the fragment carried, if any.
 */
export function takeFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  const code = params.get("code");
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  if (token || code) history.replaceState(null, "", location.pathname + location.search);
  return { code };
}

/** The stored token, or null. */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Forget the token (sign out, or the server refused it). */
export function forget() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/**
 * The token's claims, read without verifying (only to shape the page: the server checks
 * every request). Null when there is no token or it cannot be read or has expired.
 */
export function claims() {
  const raw = token();
  if (!raw) return null;
  try {
    const part = raw.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      [...atob(part)].map((c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    const data = JSON.parse(json);
    if (typeof data.exp === "number" && data.exp * 1000 < Date.now()) return null;
    return data;
  } catch {
    return null;
  }
}

/** Whether the token is a moderator's or organiser's. */
export function isStaff(c = claims()) {
  return !!c && (c.role === "moderator" || c.role === "organiser");
}

/** An error from the HTTP API, with its `code` (see docs/protocol.md). */
export class ApiError extends Error {
  constructor(code, message, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** Call the HTTP API with the stored token; JSON in and out. Throws ApiError. */
export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("offline", "network", 0);
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = data.error || {};
    throw new ApiError(error.code || "internal", error.message || response.statusText, response.status);
  }
  return data;
}

/**
 * Trade an invite code (or a hall code) for a token, on this device.
 * The device id is kept in localStorage: the same browser may redeem its code again.
 * @param {"invite"|"hall"} kind
 * @returns {Promise<object>} the server's answer (user, topic for a hall).
 */
export async function redeem(code, kind = "invite") {
  const path = kind === "hall" ? "/api/v1/halls/join" : "/api/v1/invites/redeem";
  const body = { code: code.trim() };
  const device = localStorage.getItem(DEVICE_KEY);
  if (device) body.device = device;
  const data = await api("POST", path, body);
  localStorage.setItem(DEVICE_KEY, data.device);
  sessionStorage.setItem(TOKEN_KEY, data.token);
  return data;
}

/** The message key for a failed redeem, by error code. */
export function redeemErrorKey(error) {
  return {
    not_found: "signin.error.not_found",
    closed: "signin.error.closed",
    conflict: "signin.error.conflict",
    rate_limited: "signin.error.rate_limited",
    invalid: "signin.error.invalid",
    offline: "signin.error.offline",
  }[error.code] || "signin.error.other";
}
