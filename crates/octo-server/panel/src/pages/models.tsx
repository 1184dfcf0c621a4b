// Models: the exposed models with their targets, strategy, weights and price; add, edit and delete
// through the control-plane API.
import { useState } from "preact/hooks";
import { list } from "../api";
import { Editing, ObjectActions, ObjectDialog } from "../objects";
import { ErrorText, NotYet, Source, useResource } from "../ui";

type Model = { name: string; targets?: { backend: string; model?: string; weight?: number }[]; strategy?: unknown; [k: string]: unknown };

export function Models() {
  const models = useResource<unknown>("/api/v1/models");
  const [editing, setEditing] = useState<Editing | null>(null);
  if (models.missing) return <NotYet route="/api/v1/models" what="Listing and editing models" />;
  const rows = list<Model>(models.data);
  return (
    <section aria-label="Models">
      <ErrorText error={models.error} />
      <div class="toolbar">
        <button
          class="primary"
          type="button"
          onClick={() => setEditing({ name: null, value: { name: "my-model", targets: [{ backend: "my-backend", model: "gpt-4o-mini" }] } })}
        >
          Add model
        </button>
      </div>
      <table>
        <thead>
          <tr>
            <th scope="col">Model</th>
            <th scope="col">Targets (backend → model, weight)</th>
            <th scope="col">Strategy</th>
            <th scope="col">Price</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((m) => (
            <tr key={m.name}>
              <th scope="row">
                {m.name} <Source source={m.source} />
              </th>
              <td>
                {(m.targets ?? []).map((t, i) => (
                  <div key={i}>
                    {t.backend} → {t.model ?? m.name}
                    {t.weight !== undefined ? ` (${t.weight})` : ""}
                  </div>
                ))}
              </td>
              <td>{typeof m.strategy === "string" ? m.strategy : m.strategy ? JSON.stringify(m.strategy) : "–"}</td>
              <td class="small">{m.price ? JSON.stringify(m.price) : "–"}</td>
              <td class="actions">
                <ObjectActions
                  kind="model"
                  collection="/api/v1/models"
                  name={m.name}
                  source={m.source}
                  onEdit={() => setEditing({ name: m.name, value: m })}
                  onChanged={models.reload}
                />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {editing && (
        <ObjectDialog
          kind="model"
          collection="/api/v1/models"
          addTitle="Add a model"
          help="Fields as in the YAML config (docs/config.md, models.<name>): targets, strategy, retry, access, rules."
          editing={editing}
          onClose={() => setEditing(null)}
          onSaved={models.reload}
        />
      )}
    </section>
  );
}
