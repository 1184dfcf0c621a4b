// The admin API as the panel uses it: same-origin fetches with the session cookie, the session's
// CSRF token on every changing request, errors as exceptions carrying the API's message.

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrf = "";
let onUnauthorized: () => void = () => {};

export function setCsrf(token: string): void {
  csrf = token;
}

export function whenUnauthorized(f: () => void): void {
  onUnauthorized = f;
}

export async function api<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && csrf) headers["x-octollm-csrf"] = csrf;
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: unknown = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = text;
  }
  if (!res.ok) {
    const msg =
      (data as { error?: { message?: string } } | undefined)?.error?.message ??
      `${res.status} ${res.statusText}`;
    if (res.status === 401 && path !== "/api/v1/login") onUnauthorized();
    throw new ApiError(res.status, msg);
  }
  return data as T;
}

export const get = <T = unknown>(path: string) => api<T>("GET", path);

/** A list answer, whether the route returns `[...]` or `{"data": [...]}`. */
export function list<T>(v: unknown): T[] {
  if (Array.isArray(v)) return v as T[];
  const d = (v as { data?: unknown })?.data;
  return Array.isArray(d) ? (d as T[]) : [];
}

export interface Me {
  actor: string;
  name: string;
  via: "session" | "token";
  csrf_token?: string;
  expires_at?: string;
}

export interface Usage {
  input_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  output_tokens: number;
  reasoning_tokens: number;
}

export interface Attempt {
  backend: string;
  key: string | null;
  status: number | null;
  offset_ms: number;
  duration_ms: number;
  error: string | null;
}

export interface LogRecord {
  id: string;
  started_at: string;
  duration_ms: number;
  ttfb_ms: number | null;
  client_protocol: string;
  upstream_protocol: string | null;
  model: string | null;
  upstream_model: string | null;
  org: string | null;
  user: string | null;
  rule: string | null;
  backend: string | null;
  stream: boolean;
  status: number;
  error: string | null;
  attempts: Attempt[];
  usage: Usage | null;
  finish_reason: string | null;
  cost_usd: number | null;
  price: { input: number; output: number; cache_read: number; cache_write: number; source: string } | null;
  cache_hit: boolean;
  overhead_ns: number;
  [k: string]: unknown;
}

export interface LogPage {
  data: LogRecord[];
  next: string | null;
}

export interface Figures {
  requests: number;
  errors: number;
  input_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  output_tokens: number;
  reasoning_tokens: number;
  cost_usd: number | null;
  avg_duration_ms: number;
  max_duration_ms: number;
  avg_ttfb_ms: number | null;
}

export interface StatsBucket extends Figures {
  start: string;
  group: string | null;
}

export interface Stats {
  buckets: StatsBucket[];
  totals: Figures;
}

/** `GET /api/v1/health`: the instance (docs/admin.md). */
export interface Health {
  /** `ok`, or `degraded` while the admin API's stored objects are not in force. */
  status: string;
  storage?: { configured: boolean; open: boolean };
  /** `api_objects`: `loaded`, `pending` (the database has not answered since startup) or `off`. */
  control_plane?: { api_objects: string };
}

/** Query string from the non-empty entries of `q`. */
export function qs(q: Record<string, string | number | undefined | null>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null && v !== "") p.set(k, String(v));
  const s = p.toString();
  return s ? `?${s}` : "";
}

/** Whether an error means "this route does not exist in this build yet". */
export function missingRoute(e: unknown): boolean {
  return e instanceof ApiError && e.status === 404 && /no such admin route/.test(e.message);
}
