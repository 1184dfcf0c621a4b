// Backends: health at a glance (usable and resting keys, breaker states from /metrics; traffic,
// errors and latency of the last hour from the rollups), and, with the control-plane API, adding,
// editing, testing and syncing the model list of each backend.
import { useEffect, useState } from "preact/hooks";
import { api, get, list, qs, Stats } from "../api";
import { ms, num } from "../format";
import { Editing, ObjectActions, ObjectDialog } from "../objects";
import { ErrorText, NotYet, Source, useResource } from "../ui";

interface Health {
  keys: Record<string, number>;
  breakers: Record<string, number>;
}

/** Reads the backend gauges out of the Prometheus text. */
export function parseHealth(text: string): Map<string, Health> {
  const out = new Map<string, Health>();
  const re = /^octollm_backend_(keys|breakers)\{([^}]*)\}\s+([0-9.e+-]+)$/gm;
  for (const m of text.matchAll(re)) {
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    const h = out.get(labels.backend) ?? { keys: {}, breakers: {} };
    h[m[1] as "keys" | "breakers"][labels.state] = Number(m[3]);
    out.set(labels.backend, h);
  }
  return out;
}

type Backend = { name: string; [k: string]: unknown };

export function Backends() {
  const [health, setHealth] = useState<Map<string, Health>>(new Map());
  const [traffic, setTraffic] = useState<Stats | null>(null);
  const [error, setError] = useState("");
  const backends = useResource<unknown>("/api/v1/backends", 10000);
  const [editing, setEditing] = useState<Editing | null>(null);
  const [result, setResult] = useState<{ title: string; body: unknown } | null>(null);

  useEffect(() => {
    let alive = true;
    const load = async () => {
      try {
        const res = await fetch("/metrics", { credentials: "same-origin" });
        const text = await res.text();
        const since = new Date(Date.now() - 3600e3).toISOString();
        const s = await get<Stats>("/api/v1/stats" + qs({ bucket: "minute", since, group_by: "backend" })).catch(() => null);
        if (!alive) return;
        if (res.ok) setHealth(parseHealth(text));
        setTraffic(s);
        setError(res.ok ? "" : `/metrics answered ${res.status}`);
      } catch (e) {
        if (alive) setError(String(e));
      }
    };
    load();
    const t = setInterval(load, 5000);
    return () => {
      alive = false;
      clearInterval(t);
    };
  }, []);

  const configured = list<Backend>(backends.data);
  const names = new Set<string>([...health.keys(), ...configured.map((b) => b.name)]);
  const perBackend = new Map<string, { req: number; err: number; dur: number }>();
  for (const b of traffic?.buckets ?? []) {
    const k = b.group ?? "";
    const t = perBackend.get(k) ?? { req: 0, err: 0, dur: 0 };
    t.req += b.requests;
    t.err += b.errors;
    t.dur += b.avg_duration_ms * b.requests;
    perBackend.set(k, t);
  }

  const act = async (title: string, method: string, path: string, body?: unknown) => {
    setResult({ title, body: "…" });
    try {
      setResult({ title, body: await api(method, path, body) });
    } catch (e) {
      setResult({ title, body: { error: (e as Error).message } });
    }
  };
  // A test request needs a model: the one a model routes to the backend, else the one asked for.
  const test = async (name: string) => {
    const path = `/api/v1/backends/${encodeURIComponent(name)}/test`;
    try {
      setResult({ title: `Test ${name}`, body: "…" });
      setResult({ title: `Test ${name}`, body: await api("POST", path, {}) });
    } catch (e) {
      const msg = (e as Error).message;
      const model = /give the upstream model/.test(msg) ? prompt(`No model routes to ${name} yet. Which upstream model should the test request use?`) : null;
      if (model) await act(`Test ${name}`, "POST", path, { model });
      else setResult({ title: `Test ${name}`, body: { error: msg } });
    }
  };

  return (
    <section aria-label="Backends">
      <ErrorText error={error || backends.error} />
      {backends.missing && <NotYet route="/api/v1/backends" what="Adding, editing, testing and syncing backends" />}
      {!backends.missing && (
        <div class="toolbar">
          <button
            class="primary"
            type="button"
            onClick={() =>
              setEditing({
                name: null,
                value: { name: "my-backend", base_url: "https://api.openai.com", protocol: "openai_chat", api_keys: ["sk-…"] },
              })
            }
          >
            Add backend
          </button>
        </div>
      )}
      <table>
        <thead>
          <tr>
            <th scope="col">Backend</th>
            <th scope="col">Keys usable / resting</th>
            <th scope="col">Breakers open / half-open / closed</th>
            <th scope="col" class="n">Requests (1 h)</th>
            <th scope="col" class="n">Errors (1 h)</th>
            <th scope="col" class="n">Avg latency (1 h)</th>
            {!backends.missing && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {[...names].sort().map((name) => {
            const h = health.get(name);
            const t = perBackend.get(name);
            const cfg = configured.find((b) => b.name === name);
            const resting = h?.keys.resting ?? 0;
            const open = (h?.breakers.open ?? 0) + (h?.breakers.half_open ?? 0);
            const state = !h ? "unknown" : resting > 0 || open > 0 ? "warn" : "ok";
            return (
              <tr key={name} data-backend={name}>
                <th scope="row">
                  <span class={`dot ${state}`} aria-label={state === "ok" ? "healthy" : state === "warn" ? "degraded" : "no data"} /> {name}{" "}
                  <Source source={cfg?.source} />
                  {typeof cfg?.base_url === "string" && <div class="muted small">{cfg.base_url}</div>}
                </th>
                <td>{h ? `${h.keys.usable ?? 0} / ${resting}` : "–"}</td>
                <td>{h ? `${h.breakers.open ?? 0} / ${h.breakers.half_open ?? 0} / ${h.breakers.closed ?? 0}` : "–"}</td>
                <td class="n">{num(t?.req ?? 0)}</td>
                <td class={`n ${t?.err ? "bad" : ""}`}>{num(t?.err ?? 0)}</td>
                <td class="n">{t?.req ? ms(t.dur / t.req) : "–"}</td>
                {!backends.missing && (
                  <td class="actions">
                    <button type="button" onClick={() => test(name)}>
                      Test
                    </button>
                    <button type="button" onClick={() => act(`Models of ${name}`, "POST", `/api/v1/backends/${encodeURIComponent(name)}/models/sync`)}>
                      Sync models
                    </button>
                    <button type="button" onClick={() => act(`Health of ${name}`, "GET", `/api/v1/backends/${encodeURIComponent(name)}/health`)}>
                      Health
                    </button>
                    {cfg && (
                      <ObjectActions
                        kind="backend"
                        collection="/api/v1/backends"
                        name={name}
                        source={cfg.source}
                        onEdit={() => setEditing({ name, value: cfg })}
                        onChanged={backends.reload}
                      />
                    )}
                  </td>
                )}
              </tr>
            );
          })}
          {names.size === 0 && (
            <tr>
              <td colSpan={7} class="muted">
                No backends reported yet.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <p class="muted small">Keys rest after a 401, 403 or 429; breakers open per key and model after repeated failures.</p>
      {result && (
        <div class="result" role="status">
          <div class="row">
            <h2>{result.title}</h2>
            <button type="button" onClick={() => setResult(null)} aria-label="Close">
              ×
            </button>
          </div>
          <pre>{typeof result.body === "string" ? result.body : JSON.stringify(result.body, null, 2)}</pre>
        </div>
      )}
      {editing && (
        <ObjectDialog
          kind="backend"
          collection="/api/v1/backends"
          addTitle="Add a backend"
          help="Fields as in the YAML config (docs/config.md, backends.<name>). Upstream keys are write-only: they are shown masked and kept unless you replace them."
          editing={editing}
          onClose={() => setEditing(null)}
          onSaved={backends.reload}
        />
      )}
    </section>
  );
}
