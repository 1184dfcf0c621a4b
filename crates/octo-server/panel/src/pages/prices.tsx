// Prices: the price table in force (config overrides, synced list, built-in snapshot), searchable,
// with overrides added and removed through the control-plane API.
import { useState } from "preact/hooks";
import { api, list } from "../api";
import { attempt, ErrorText, JsonDialog, NotYet, Source, useResource } from "../ui";

type Price = { name?: string; model?: string; input?: number; output?: number; cache_read?: number; cache_write?: number; source?: string; [k: string]: unknown };

export function Prices() {
  const prices = useResource<unknown>("/api/v1/prices");
  const [filter, setFilter] = useState("");
  const [editing, setEditing] = useState<{ name: string | null; value: unknown } | null>(null);
  if (prices.missing) return <NotYet route="/api/v1/prices" what="The price table and its overrides" />;
  const rows = list<Price>(prices.data).filter((p) => (p.name ?? p.model ?? "").toLowerCase().includes(filter.toLowerCase()));
  const sync = (prices.data as { sync?: unknown } | null)?.sync;
  return (
    <section aria-label="Prices">
      <ErrorText error={prices.error} />
      <div class="toolbar">
        <label>
          Search <input type="search" value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
        </label>
        <button type="button" class="primary" onClick={() => setEditing({ name: null, value: { name: "my-model", input: 1.0, output: 2.0 } })}>
          Add override
        </button>
      </div>
      {sync !== undefined && sync !== null && <pre class="small">{JSON.stringify(sync, null, 2)}</pre>}
      <table>
        <thead>
          <tr>
            <th scope="col">Model</th>
            <th scope="col" class="n">Input $/M</th>
            <th scope="col" class="n">Output $/M</th>
            <th scope="col" class="n">Cache read $/M</th>
            <th scope="col" class="n">Cache write $/M</th>
            <th scope="col">Source</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {rows.slice(0, 500).map((p) => {
            const name = p.name ?? p.model ?? "";
            return (
              <tr key={name}>
                <th scope="row">{name}</th>
                <td class="n">{p.input ?? "–"}</td>
                <td class="n">{p.output ?? "–"}</td>
                <td class="n">{p.cache_read ?? "–"}</td>
                <td class="n">{p.cache_write ?? "–"}</td>
                <td>
                  <Source source={p.source} />
                </td>
                <td class="actions">
                  {p.source !== "file" && (
                    <button
                      type="button"
                      onClick={async () => {
                        const m = await attempt(() => api("DELETE", `/api/v1/prices/${encodeURIComponent(name)}`));
                        if (m) alert(m);
                        prices.reload();
                      }}
                    >
                      Delete
                    </button>
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      {rows.length > 500 && <p class="muted small">Showing 500 of {rows.length}; search to narrow.</p>}
      {editing && (
        <JsonDialog
          title="Add a price override"
          initial={editing.value}
          help="USD per million tokens, fields as in the YAML config's `prices` (docs/config.md)."
          onClose={() => setEditing(null)}
          onSave={(v) =>
            attempt(async () => {
              await api("POST", "/api/v1/prices", v);
              prices.reload();
            })
          }
        />
      )}
    </section>
  );
}
