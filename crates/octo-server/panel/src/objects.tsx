// The controls every table of control-plane objects (models, backends, orgs) shares: an object from
// the YAML file is read-only; one made through the admin API can be edited as JSON (PUT) or deleted
// (DELETE) at <collection>/<name>, and a new one added (POST <collection>).
import { api } from "./api";
import { attempt, JsonDialog } from "./ui";

/** What an edit dialog holds: an existing object (`name`) or a new one (`name: null`). */
export type Editing = { name: string | null; value: unknown };

/** Edit and Delete buttons for an object made through the admin API; nothing for one from the file. */
export function ObjectActions(props: {
  /** The object's kind in messages ("model"). */
  kind: string;
  /** The API collection ("/api/v1/models"). */
  collection: string;
  name: string;
  source?: unknown;
  onEdit: () => void;
  /** Called after a delete (whether it worked or not), to reload the table. */
  onChanged: () => void;
  /** Where a failed delete's message goes (an alert by default). */
  onError?: (message: string) => void;
}) {
  if (props.source === "file") return null;
  const remove = async () => {
    if (!confirm(`Delete ${props.kind} ${props.name}?`)) return;
    const m = await attempt(() => api("DELETE", `${props.collection}/${encodeURIComponent(props.name)}`));
    if (m && props.onError) props.onError(m);
    else if (m) alert(m);
    props.onChanged();
  };
  return (
    <>
      <button type="button" onClick={props.onEdit}>
        Edit
      </button>
      <button type="button" onClick={remove}>
        Delete
      </button>
    </>
  );
}

/** The JSON dialog that adds (POST) or replaces (PUT) an object of `collection`. */
export function ObjectDialog(props: {
  kind: string;
  collection: string;
  /** The title when adding ("Add a model"). */
  addTitle: string;
  help: string;
  editing: Editing;
  onClose: () => void;
  /** Called after a save that worked, to reload the table. */
  onSaved: () => void;
}) {
  const { editing } = props;
  return (
    <JsonDialog
      title={editing.name ? `Edit ${props.kind} ${editing.name}` : props.addTitle}
      initial={editing.value}
      help={props.help}
      onClose={props.onClose}
      onSave={(v) =>
        attempt(async () => {
          if (editing.name) await api("PUT", `${props.collection}/${encodeURIComponent(editing.name)}`, v);
          else await api("POST", props.collection, v);
          props.onSaved();
        })
      }
    />
  );
}
