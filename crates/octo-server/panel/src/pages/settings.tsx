// Settings: panel users (create, delete), the effective configuration with secrets masked, and the
// audit trail of changes.
import { useState } from "preact/hooks";
import { api, ApiError, list } from "../api";
import { time } from "../format";
import { attempt, ErrorText, NotYet, Source, useResource } from "../ui";

type User = { name: string; source: string; created_at?: string; created_by?: string };
type AuditEntry = { id: number; at: number | string; actor: string; kind: string; name: string; action: string; detail?: unknown };

export function Settings() {
  const users = useResource<unknown>("/api/v1/users");
  const config = useResource<unknown>("/api/v1/config");
  const audit = useResource<unknown>("/api/v1/audit", 10000);
  const [form, setForm] = useState({ name: "", password: "" });
  const [error, setError] = useState("");
  const create = async (e: Event) => {
    e.preventDefault();
    setError("");
    try {
      await api("POST", "/api/v1/users", form);
      setForm({ name: "", password: "" });
      users.reload();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    }
  };
  return (
    <section aria-label="Settings">
      <h2>Panel users</h2>
      <ErrorText error={users.error || error} />
      <table>
        <thead>
          <tr>
            <th scope="col">User</th>
            <th scope="col">Created</th>
            <th scope="col">By</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {list<User>(users.data).map((u) => (
            <tr key={u.name}>
              <th scope="row">
                {u.name} <Source source={u.source} />
              </th>
              <td>{u.created_at ? time(u.created_at) : "–"}</td>
              <td>{u.created_by ?? "–"}</td>
              <td class="actions">
                {u.source === "api" && (
                  <button
                    type="button"
                    onClick={async () => {
                      if (!confirm(`Delete user ${u.name}? Their sessions end at once.`)) return;
                      const m = await attempt(() => api("DELETE", `/api/v1/users/${encodeURIComponent(u.name)}`));
                      if (m) setError(m);
                      users.reload();
                    }}
                  >
                    Delete
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form class="filters" onSubmit={create} aria-label="Add a user">
        <label>
          User name
          <input name="new-user" autoComplete="off" value={form.name} onInput={(e) => setForm({ ...form, name: e.currentTarget.value })} required />
        </label>
        <label>
          Password (12 characters at least)
          <input
            name="new-password"
            type="password"
            autoComplete="new-password"
            minLength={12}
            value={form.password}
            onInput={(e) => setForm({ ...form, password: e.currentTarget.value })}
            required
          />
        </label>
        <button class="primary">Add user</button>
      </form>
      <h2>Effective configuration</h2>
      {config.missing ? (
        <NotYet route="/api/v1/config" what="Showing the effective configuration" />
      ) : (
        <>
          <ErrorText error={config.error} />
          <pre class="config">{config.data === null ? "Loading…" : typeof config.data === "string" ? config.data : JSON.stringify(config.data, null, 2)}</pre>
        </>
      )}
      <h2>Audit trail</h2>
      {audit.missing ? (
        <NotYet route="/api/v1/audit" what="The audit trail" />
      ) : (
        <>
          <ErrorText error={audit.error} />
          <table>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">What</th>
                <th scope="col">Object</th>
                <th scope="col">Detail</th>
              </tr>
            </thead>
            <tbody>
              {list<AuditEntry>(audit.data).map((a) => (
                <tr key={a.id}>
                  <td>{time(new Date(a.at).toISOString())}</td>
                  <td>{a.actor}</td>
                  <td>{a.action}</td>
                  <td>
                    {a.kind} {a.name}
                  </td>
                  <td class="small mono">{a.detail === undefined || a.detail === null ? "" : JSON.stringify(a.detail)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
