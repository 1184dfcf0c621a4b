// Overview: requests, tokens, cost, errors, latency and time to first byte over time, optionally
// split by model, backend, org, key or status. Reads only /api/v1/stats (the rollups), so its cost
// does not grow with the request log; and a banner while the instance is degraded
// (/api/v1/health).
import { useEffect, useRef, useState } from "preact/hooks";
import { get, Health, qs, Stats, StatsBucket } from "../api";
import { LineChart, Series, color } from "../chart";
import { ms, num, usd } from "../format";
import { useResource } from "../ui";

const RANGES = [
  { id: "15m", label: "15 min", span: 15 * 60e3, bucket: "minute" },
  { id: "1h", label: "1 hour", span: 3600e3, bucket: "minute" },
  { id: "6h", label: "6 hours", span: 6 * 3600e3, bucket: "minute" },
  { id: "24h", label: "24 hours", span: 24 * 3600e3, bucket: "hour" },
  { id: "7d", label: "7 days", span: 7 * 86400e3, bucket: "hour" },
  { id: "30d", label: "30 days", span: 30 * 86400e3, bucket: "day" },
] as const;
const WIDTH: Record<string, number> = { minute: 60e3, hour: 3600e3, day: 86400e3 };
const GROUPS = [
  ["", "nothing"],
  ["model", "model"],
  ["backend", "backend"],
  ["org", "org"],
  ["user", "key"],
  ["status", "status"],
] as const;
const MAX_SERIES = 8;

type Metric = (b: StatsBucket) => number | null;

const allTokens = (b: StatsBucket) => b.input_tokens + b.cache_read_tokens + b.cache_write_tokens + b.output_tokens;

export function Overview(props: { params: URLSearchParams }) {
  const [range, setRange] = useState(props.params.get("range") ?? "1h");
  const [group, setGroup] = useState(props.params.get("group") ?? "");
  const [live, setLive] = useState(true);
  const [stats, setStats] = useState<Stats | null>(null);
  const [window_, setWindow] = useState<{ since: number; until: number; width: number } | null>(null);
  const [error, setError] = useState("");
  const [loadMs, setLoadMs] = useState<number | null>(null);
  const seq = useRef(0);
  const r = RANGES.find((x) => x.id === range) ?? RANGES[1];

  const load = async () => {
    const n = ++seq.current;
    const started = performance.now();
    const width = WIDTH[r.bucket];
    const now = Date.now();
    const since = Math.floor((now - r.span) / width) * width;
    try {
      const s = await get<Stats>(
        "/api/v1/stats" +
          qs({ bucket: r.bucket, since: new Date(since).toISOString(), until: new Date(now).toISOString(), group_by: group }),
      );
      if (n !== seq.current) return;
      setStats(s);
      setWindow({ since, until: now, width });
      setError("");
      requestAnimationFrame(() => setLoadMs(Math.round(performance.now() - started)));
    } catch (e) {
      if (n === seq.current) setError(String((e as Error).message ?? e));
    }
  };

  useEffect(() => {
    load();
    if (!live) return;
    const t = setInterval(load, r.span <= 86400e3 ? 5000 : 30000);
    return () => clearInterval(t);
  }, [range, group, live]);

  useEffect(() => {
    const q = new URLSearchParams({ range, group }).toString();
    history.replaceState(null, "", `#/overview?${q}`);
  }, [range, group]);

  const times: number[] = [];
  if (window_) for (let t = window_.since; t <= window_.until; t += window_.width) times.push(t);

  // Series: one per group (the busiest MAX_SERIES), or one named "all".
  const groups = new Map<string, number>();
  for (const b of stats?.buckets ?? []) {
    const g = group ? (b.group ?? "(none)") : "all";
    groups.set(g, (groups.get(g) ?? 0) + b.requests);
  }
  const names = [...groups.entries()].sort((a, b) => b[1] - a[1]).map(([g]) => g);
  const shown = names.slice(0, MAX_SERIES);
  const series = (m: Metric): Series[] =>
    shown.map((name) => {
      const points = new Map<number, number>();
      for (const b of stats?.buckets ?? []) {
        const g = group ? (b.group ?? "(none)") : "all";
        if (g !== name) continue;
        const v = m(b);
        if (v !== null) points.set(Date.parse(b.start), (points.get(Date.parse(b.start)) ?? 0) + v);
      }
      return { name, points };
    });

  const t = stats?.totals;
  const errorRate = t && t.requests ? (100 * t.errors) / t.requests : 0;

  // Per-group totals for the table.
  const rows = names.map((name) => {
    let req = 0,
      err = 0,
      tok = 0,
      cost = 0,
      dur = 0;
    for (const b of stats?.buckets ?? []) {
      const g = group ? (b.group ?? "(none)") : "all";
      if (g !== name) continue;
      req += b.requests;
      err += b.errors;
      tok += allTokens(b);
      cost += b.cost_usd ?? 0;
      dur += b.avg_duration_ms * b.requests;
    }
    return { name, req, err, tok, cost, lat: req ? dur / req : 0 };
  });

  return (
    <section aria-label="Overview" data-load-ms={loadMs ?? undefined}>
      <Degraded />
      <div class="toolbar">
        <div class="segmented" role="radiogroup" aria-label="Time range">
          {RANGES.map((x) => (
            <button key={x.id} type="button" role="radio" aria-checked={x.id === r.id} onClick={() => setRange(x.id)}>
              {x.label}
            </button>
          ))}
        </div>
        <label>
          Split by{" "}
          <select value={group} onChange={(e) => setGroup(e.currentTarget.value)}>
            {GROUPS.map(([v, l]) => (
              <option key={v} value={v}>
                {l}
              </option>
            ))}
          </select>
        </label>
        <label class="check">
          <input type="checkbox" checked={live} onChange={(e) => setLive(e.currentTarget.checked)} /> Live
        </label>
        <button type="button" onClick={load}>
          Refresh
        </button>
        {loadMs !== null && <span class="muted small">loaded in {loadMs} ms</span>}
      </div>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class="tiles">
        <Tile label="Requests" value={num(t?.requests)} />
        <Tile label="Tokens" value={num(t ? t.input_tokens + t.cache_read_tokens + t.cache_write_tokens + t.output_tokens : null)} />
        <Tile label="Cost" value={usd(t?.cost_usd)} />
        <Tile label="Errors" value={`${num(t?.errors)}${t?.requests ? ` (${errorRate.toFixed(1)}%)` : ""}`} />
        <Tile label="Avg latency" value={ms(t?.requests ? t.avg_duration_ms : null)} />
        <Tile label="Avg TTFB" value={ms(t?.avg_ttfb_ms)} />
      </div>
      <div class="charts">
        <LineChart title="Requests" series={series((b) => b.requests)} times={times} format={num} />
        <LineChart title="Tokens" series={series(allTokens)} times={times} format={num} />
        <LineChart title="Cost (USD)" series={series((b) => b.cost_usd)} times={times} format={usd} />
        <LineChart title="Errors" series={series((b) => b.errors)} times={times} format={num} />
        <LineChart title="Average latency" series={series((b) => (b.requests ? b.avg_duration_ms : null))} times={times} format={ms} gaps />
        <LineChart title="Average time to first byte" series={series((b) => b.avg_ttfb_ms)} times={times} format={ms} gaps />
      </div>
      {group && rows.length > 0 && (
        <table>
          <caption>By {GROUPS.find(([v]) => v === group)?.[1]}</caption>
          <thead>
            <tr>
              <th scope="col">{GROUPS.find(([v]) => v === group)?.[1]}</th>
              <th scope="col" class="n">Requests</th>
              <th scope="col" class="n">Errors</th>
              <th scope="col" class="n">Tokens</th>
              <th scope="col" class="n">Cost</th>
              <th scope="col" class="n">Avg latency</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row, i) => (
              <tr key={row.name}>
                <td>
                  {i < MAX_SERIES && <i class="swatch" style={{ background: color(i) }} />}
                  {row.name}
                </td>
                <td class="n">{num(row.req)}</td>
                <td class="n">{num(row.err)}</td>
                <td class="n">{num(row.tok)}</td>
                <td class="n">{usd(row.cost)}</td>
                <td class="n">{ms(row.lat)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** How often the overview asks whether the instance is still degraded (ms). */
const HEALTH_EVERY = 10000;

/** A banner while the instance is degraded: the database holding the admin API's objects has not
 * answered since startup, so only the config file's objects are in force. */
function Degraded() {
  const health = useResource<Health>("/api/v1/health", HEALTH_EVERY);
  const h = health.data;
  if (!h || h.status !== "degraded") return null;
  return (
    <div class="notice degraded" role="status" aria-label="Degraded">
      <strong>Degraded.</strong> The database (<code>storage.url</code>) has not answered since this instance started: only the
      config file's backends, models, orgs, prices and keys are in force. Those made through the admin API apply once it answers;
      until then changes through the admin API are refused.
      {h.storage?.configured && !h.storage.open && " Request log records wait in memory and are written once it answers."}
    </div>
  );
}

function Tile(props: { label: string; value: string }) {
  return (
    <div class="tile">
      <div class="muted small">{props.label}</div>
      <div class="big">{props.value}</div>
    </div>
  );
}
