// Logs: the request log, newest first, filtered by model, backend, org, key, status and time, with
// a live tail and each record's detail (attempts, usage, cost, price, and bodies when logged).
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, get, LogPage, LogRecord, qs } from "../api";
import { ms, num, time, tokens, usd } from "../format";

const FILTERS = [
  ["model", "Model"],
  ["backend", "Backend"],
  ["org", "Org"],
  ["user", "Key"],
  ["status", "Status"],
] as const;

type Filters = Record<string, string>;

function fromParams(p: URLSearchParams): Filters {
  const f: Filters = {};
  for (const k of ["model", "backend", "org", "user", "status", "since", "until", "id"]) f[k] = p.get(k) ?? "";
  return f;
}

function isoOrEmpty(local: string): string {
  if (!local) return "";
  const d = new Date(local);
  return isNaN(d.getTime()) ? "" : d.toISOString();
}

export function Logs(props: { params: URLSearchParams }) {
  const [filters, setFilters] = useState<Filters>(fromParams(props.params));
  const [draft, setDraft] = useState<Filters>(filters);
  const [rows, setRows] = useState<LogRecord[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [tail, setTail] = useState(false);
  const [error, setError] = useState("");
  const [selected, setSelected] = useState<string | null>(filters.id || null);
  const seq = useRef(0);

  const query = (before?: string) =>
    "/api/v1/logs" +
    qs({
      model: filters.model,
      backend: filters.backend,
      org: filters.org,
      user: filters.user,
      status: filters.status,
      since: isoOrEmpty(filters.since),
      until: isoOrEmpty(filters.until),
      limit: 50,
      before,
    });

  const load = async () => {
    const n = ++seq.current;
    try {
      const page = await get<LogPage>(query());
      if (n !== seq.current) return;
      setRows(page.data);
      setNext(page.next);
      setError("");
    } catch (e) {
      if (n === seq.current) setError((e as Error).message);
    }
  };

  const older = async () => {
    if (!next) return;
    try {
      const page = await get<LogPage>(query(next));
      setRows((r) => [...r, ...page.data]);
      setNext(page.next);
    } catch (e) {
      setError((e as Error).message);
    }
  };

  useEffect(() => {
    load();
    const q = new URLSearchParams(Object.entries({ ...filters, id: selected ?? "" }).filter(([, v]) => v)).toString();
    history.replaceState(null, "", `#/logs${q ? `?${q}` : ""}`);
  }, [filters]);

  useEffect(() => {
    if (!tail) return;
    const t = setInterval(load, 2000);
    return () => clearInterval(t);
  }, [tail, filters]);

  const apply = (e: Event) => {
    e.preventDefault();
    setFilters({ ...draft });
  };
  const clear = () => {
    const empty = fromParams(new URLSearchParams());
    setDraft(empty);
    setFilters(empty);
  };

  return (
    <section aria-label="Request log">
      <form class="filters" onSubmit={apply} aria-label="Filters">
        {FILTERS.map(([k, label]) => (
          <label key={k}>
            {label}
            <input
              name={k}
              value={draft[k]}
              inputMode={k === "status" ? "numeric" : undefined}
              onInput={(e) => setDraft({ ...draft, [k]: e.currentTarget.value })}
            />
          </label>
        ))}
        <label>
          From
          <input type="datetime-local" name="since" value={draft.since} onInput={(e) => setDraft({ ...draft, since: e.currentTarget.value })} />
        </label>
        <label>
          To
          <input type="datetime-local" name="until" value={draft.until} onInput={(e) => setDraft({ ...draft, until: e.currentTarget.value })} />
        </label>
        <button class="primary">Apply</button>
        <button type="button" onClick={clear}>
          Clear
        </button>
        <label class="check">
          <input type="checkbox" checked={tail} onChange={(e) => setTail(e.currentTarget.checked)} /> Live tail
        </label>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <div class={selected ? "split" : ""}>
        <table class="log">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Model</th>
              <th scope="col">Backend</th>
              <th scope="col">Org / key</th>
              <th scope="col" class="n">Status</th>
              <th scope="col" class="n">Duration</th>
              <th scope="col" class="n">TTFB</th>
              <th scope="col" class="n">Tokens</th>
              <th scope="col" class="n">Cost</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr
                key={r.id}
                tabIndex={0}
                class={r.id === selected ? "selected" : ""}
                aria-selected={r.id === selected}
                onClick={() => setSelected(r.id)}
                onKeyDown={(e) => {
                  if (e.key === "Enter" || e.key === " ") {
                    e.preventDefault();
                    setSelected(r.id);
                  }
                }}
                data-id={r.id}
              >
                <td>{time(r.started_at)}</td>
                <td>{r.model ?? "–"}</td>
                <td>{r.backend ?? "–"}</td>
                <td>{[r.org, r.user].filter(Boolean).join(" / ") || "–"}</td>
                <td class={`n ${r.status >= 400 ? "bad" : "good"}`}>{r.status}</td>
                <td class="n">{ms(r.duration_ms)}</td>
                <td class="n">{ms(r.ttfb_ms)}</td>
                <td class="n">{r.usage ? num(tokens(r.usage)) : "–"}</td>
                <td class="n">{usd(r.cost_usd)}</td>
              </tr>
            ))}
            {rows.length === 0 && (
              <tr>
                <td colSpan={9} class="muted">
                  No requests match.
                </td>
              </tr>
            )}
          </tbody>
        </table>
        {selected && <Detail id={selected} onClose={() => setSelected(null)} />}
      </div>
      {next && (
        <button type="button" onClick={older}>
          Older
        </button>
      )}
    </section>
  );
}

function Detail(props: { id: string; onClose: () => void }) {
  const [rec, setRec] = useState<LogRecord | null>(null);
  const [error, setError] = useState("");
  const ref = useRef<HTMLElement>(null);
  useEffect(() => {
    setRec(null);
    get<LogRecord>(`/api/v1/logs/${encodeURIComponent(props.id)}`)
      .then((r) => {
        setRec(r);
        setError("");
        ref.current?.focus();
      })
      .catch((e) => setError(e instanceof ApiError ? e.message : String(e)));
  }, [props.id]);
  const bodies = rec ? Object.entries(rec).filter(([k, v]) => /body/.test(k) && v !== null && v !== undefined) : [];
  return (
    <aside class="detail" aria-label="Request detail" tabIndex={-1} ref={ref} onKeyDown={(e) => e.key === "Escape" && props.onClose()}>
      <div class="row">
        <h2>Request</h2>
        <button type="button" onClick={props.onClose} aria-label="Close the detail">
          ×
        </button>
      </div>
      {error && <p class="error">{error}</p>}
      {rec && (
        <>
          <dl>
            <dt>ID</dt>
            <dd class="mono">{rec.id}</dd>
            <dt>Started</dt>
            <dd>{new Date(rec.started_at).toLocaleString()}</dd>
            <dt>Protocol</dt>
            <dd>
              {rec.client_protocol} → {rec.upstream_protocol ?? "–"}
            </dd>
            <dt>Model</dt>
            <dd>
              {rec.model ?? "–"} → {rec.upstream_model ?? "–"}
            </dd>
            <dt>Org / key</dt>
            <dd>{[rec.org, rec.user].filter(Boolean).join(" / ") || "–"}</dd>
            <dt>Rule</dt>
            <dd>{rec.rule ?? "–"}</dd>
            <dt>Status</dt>
            <dd class={rec.status >= 400 ? "bad" : "good"}>
              {rec.status}
              {rec.error ? ` — ${rec.error}` : ""}
            </dd>
            <dt>Stream</dt>
            <dd>{rec.stream ? "yes" : "no"}</dd>
            <dt>Duration / TTFB</dt>
            <dd>
              {ms(rec.duration_ms)} / {ms(rec.ttfb_ms)}
            </dd>
            <dt>Finish</dt>
            <dd>{rec.finish_reason ?? "–"}</dd>
            <dt>Cost</dt>
            <dd>
              {usd(rec.cost_usd)}
              {rec.price && (
                <span class="muted">
                  {" "}
                  (in ${rec.price.input}/M, out ${rec.price.output}/M, {rec.price.source})
                </span>
              )}
            </dd>
            <dt>Cache hit</dt>
            <dd>{rec.cache_hit ? "yes" : "no"}</dd>
          </dl>
          <h3>Usage</h3>
          {rec.usage ? (
            <table class="compact">
              <tbody>
                {Object.entries(rec.usage).map(([k, v]) => (
                  <tr key={k}>
                    <th scope="row">{k.replace(/_/g, " ")}</th>
                    <td class="n">{num(v)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p class="muted">The upstream reported no usage.</p>
          )}
          <h3>Attempts</h3>
          <table class="compact">
            <thead>
              <tr>
                <th scope="col">Backend</th>
                <th scope="col">Key</th>
                <th scope="col" class="n">Status</th>
                <th scope="col" class="n">At</th>
                <th scope="col" class="n">Took</th>
                <th scope="col">Error</th>
              </tr>
            </thead>
            <tbody>
              {rec.attempts.map((a, i) => (
                <tr key={i}>
                  <td>{a.backend}</td>
                  <td>{a.key ?? "–"}</td>
                  <td class="n">{a.status ?? "skipped"}</td>
                  <td class="n">{ms(a.offset_ms)}</td>
                  <td class="n">{ms(a.duration_ms)}</td>
                  <td>{a.error ?? ""}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {bodies.map(([k, v]) => (
            <div key={k}>
              <h3>{k.replace(/_/g, " ")}</h3>
              <pre>{typeof v === "string" ? v : JSON.stringify(v, null, 2)}</pre>
            </div>
          ))}
          {bodies.length === 0 && <p class="muted small">Bodies are not kept in the log for this request.</p>}
        </>
      )}
    </aside>
  );
}
