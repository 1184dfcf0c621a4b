// Keys and orgs: gateway keys by org with expiry, last use and spend; create a key (revealed once,
// with a copy button), revoke it; the orgs list.
import { useState } from "preact/hooks";
import { api, ApiError, list } from "../api";
import { time, usd } from "../format";
import { Editing, ObjectActions, ObjectDialog } from "../objects";
import { attempt, CopyButton, ErrorText, NotYet, Source, useResource } from "../ui";

type Key = {
  org: string;
  name: string;
  source?: string;
  models?: string[];
  expires?: string | null;
  last_used_at?: string | null;
  spend_usd?: number | null;
  requests?: number;
  [k: string]: unknown;
};
type Org = { name: string; [k: string]: unknown };

export function Keys() {
  const keys = useResource<unknown>("/api/v1/keys");
  const orgs = useResource<unknown>("/api/v1/orgs");
  const [form, setForm] = useState({ org: "", name: "", models: "", expires: "" });
  const [created, setCreated] = useState<{ org: string; name: string; key: string } | null>(null);
  const [error, setError] = useState("");
  const [orgEdit, setOrgEdit] = useState<Editing | null>(null);
  if (keys.missing) return <NotYet route="/api/v1/keys" what="Creating and revoking gateway keys" />;
  const orgList = list<Org>(orgs.data);
  const create = async (e: Event) => {
    e.preventDefault();
    setError("");
    const body: Record<string, unknown> = { org: form.org, name: form.name };
    const models = form.models
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    if (models.length) body.models = models;
    if (form.expires) body.expires = new Date(form.expires).toISOString();
    try {
      const r = await api<{ key: string; org: string; name: string }>("POST", "/api/v1/keys", body);
      setCreated({ org: r.org ?? form.org, name: r.name ?? form.name, key: r.key });
      setForm({ ...form, name: "" });
      keys.reload();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    }
  };
  return (
    <section aria-label="Keys and orgs">
      <ErrorText error={keys.error} />
      <form class="filters" onSubmit={create} aria-label="Create a key">
        <label>
          Org
          <input name="org" list="orgs" value={form.org} onInput={(e) => setForm({ ...form, org: e.currentTarget.value })} required />
          <datalist id="orgs">
            {orgList.map((o) => (
              <option key={o.name} value={o.name} />
            ))}
          </datalist>
        </label>
        <label>
          Key name
          <input name="name" value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} required />
        </label>
        <label>
          Models (comma-separated, empty: all)
          <input name="models" value={form.models} onInput={(e) => setForm({ ...form, models: e.currentTarget.value })} />
        </label>
        <label>
          Expires
          <input type="datetime-local" name="expires" value={form.expires} onInput={(e) => setForm({ ...form, expires: e.currentTarget.value })} />
        </label>
        <button class="primary">Create key</button>
      </form>
      <ErrorText error={error} />
      {created && (
        <div class="reveal" role="status">
          <p>
            <strong>
              Key {created.org}/{created.name} created.
            </strong>{" "}
            Copy it now: it is shown this once and stored only as a hash.
          </p>
          <div class="row">
            <input class="mono" readOnly value={created.key} aria-label="The new key" onFocus={(e) => e.currentTarget.select()} />
            <CopyButton text={created.key} />
            <button type="button" onClick={() => setCreated(null)}>
              Done
            </button>
          </div>
        </div>
      )}
      <table>
        <thead>
          <tr>
            <th scope="col">Org</th>
            <th scope="col">Key</th>
            <th scope="col">Models</th>
            <th scope="col">Expires</th>
            <th scope="col">Last used</th>
            <th scope="col" class="n">Requests</th>
            <th scope="col" class="n">Spend</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {list<Key>(keys.data).map((k) => (
            <tr key={`${k.org}/${k.name}`} data-key={`${k.org}/${k.name}`}>
              <td>{k.org}</td>
              <th scope="row">
                {k.name} <Source source={k.source} />
              </th>
              <td>{k.models?.length ? k.models.join(", ") : "all"}</td>
              <td>{k.expires ? time(k.expires) : "never"}</td>
              <td>{k.last_used_at ? time(k.last_used_at) : "–"}</td>
              <td class="n">{k.requests ?? "–"}</td>
              <td class="n">{usd(k.spend_usd ?? null)}</td>
              <td class="actions">
                {k.source !== "file" && (
                  <button
                    type="button"
                    onClick={async () => {
                      if (!confirm(`Revoke key ${k.org}/${k.name}? Requests with it are refused at once.`)) return;
                      const m = await attempt(() => api("DELETE", `/api/v1/keys/${encodeURIComponent(k.org)}/${encodeURIComponent(k.name)}`));
                      if (m) setError(m);
                      keys.reload();
                    }}
                  >
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Orgs</h2>
      {orgs.missing ? (
        <NotYet route="/api/v1/orgs" what="Editing orgs" />
      ) : (
        <>
          <div class="toolbar">
            <button type="button" onClick={() => setOrgEdit({ name: null, value: { name: "my-org" } })}>
              Add org
            </button>
          </div>
          <table>
            <thead>
              <tr>
                <th scope="col">Org</th>
                <th scope="col">Settings</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {orgList.map((o) => (
                <tr key={o.name}>
                  <th scope="row">
                    {o.name} <Source source={o.source} />
                  </th>
                  <td class="small mono">{JSON.stringify(Object.fromEntries(Object.entries(o).filter(([k]) => k !== "name" && k !== "source" && k !== "keys")))}</td>
                  <td class="actions">
                    <ObjectActions
                      kind="org"
                      collection="/api/v1/orgs"
                      name={o.name}
                      source={o.source}
                      onEdit={() => setOrgEdit({ name: o.name, value: o })}
                      onChanged={orgs.reload}
                      onError={setError}
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {orgEdit && (
        <ObjectDialog
          kind="org"
          collection="/api/v1/orgs"
          addTitle="Add an org"
          help="Fields as in the YAML config (docs/config.md, orgs.<org>)."
          editing={orgEdit}
          onClose={() => setOrgEdit(null)}
          onSaved={orgs.reload}
        />
      )}
    </section>
  );
}
