// Small building blocks shared by the pages: loading a resource, the honest "not in this build"
// notice, a copy button, and a JSON editor for objects whose fields follow the YAML's names.
import { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, missingRoute } from "./api";

export interface Resource<T> {
  data: T | null;
  error: string;
  missing: boolean;
  reload: () => void;
}

export function useResource<T>(path: string | null, every?: number): Resource<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState("");
  const [missing, setMissing] = useState(false);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (!path) return;
    let alive = true;
    const load = () =>
      get<T>(path)
        .then((d) => {
          if (!alive) return;
          setData(d);
          setError("");
          setMissing(false);
        })
        .catch((e) => {
          if (!alive) return;
          if (missingRoute(e)) setMissing(true);
          else setError(e instanceof ApiError ? e.message : String(e));
        });
    load();
    const t = every ? setInterval(load, every) : undefined;
    return () => {
      alive = false;
      if (t) clearInterval(t);
    };
  }, [path, tick]);
  return { data, error, missing, reload: () => setTick((t) => t + 1) };
}

/** Said when the admin API of this build has no route for a page's objects yet. */
export function NotYet(props: { route: string; what: string }) {
  return (
    <div class="notice" role="status">
      <strong>Not available in this build.</strong> {props.what} needs the admin API route <code>{props.route}</code>, which this
      server does not have yet. Until then, edit the YAML config file; the gateway reloads it live.
    </div>
  );
}

export function ErrorText(props: { error: string }) {
  return props.error ? (
    <p class="error" role="alert">
      {props.error}
    </p>
  ) : null;
}

export function CopyButton(props: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(props.text);
    } catch {
      const t = document.createElement("textarea");
      t.value = props.text;
      document.body.appendChild(t);
      t.select();
      document.execCommand("copy");
      t.remove();
    }
    setDone(true);
    setTimeout(() => setDone(false), 1500);
  };
  return (
    <button type="button" onClick={copy} aria-live="polite">
      {done ? "Copied" : (props.label ?? "Copy")}
    </button>
  );
}

/** A dialog editing a JSON object; `onSave` returns an error message or "". */
export function JsonDialog(props: {
  title: string;
  initial: unknown;
  help?: ComponentChildren;
  onSave: (v: unknown) => Promise<string>;
  onClose: () => void;
}) {
  const [text, setText] = useState(JSON.stringify(props.initial, null, 2));
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const save = async (e: Event) => {
    e.preventDefault();
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (err) {
      setError(`Not valid JSON: ${(err as Error).message}`);
      return;
    }
    setBusy(true);
    const msg = await props.onSave(v);
    setBusy(false);
    if (msg) setError(msg);
    else props.onClose();
  };
  return (
    <div class="modal" role="dialog" aria-modal="true" aria-label={props.title} onKeyDown={(e) => e.key === "Escape" && props.onClose()}>
      <form onSubmit={save}>
        <h2>{props.title}</h2>
        {props.help && <p class="muted small">{props.help}</p>}
        <textarea rows={16} value={text} onInput={(e) => setText(e.currentTarget.value)} autoFocus spellcheck={false} aria-label="JSON" />
        <ErrorText error={error} />
        <div class="row">
          <button class="primary" disabled={busy}>
            Save
          </button>
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
        </div>
      </form>
    </div>
  );
}

/** Runs an API call, returning its error message or "". */
export async function attempt(f: () => Promise<unknown>): Promise<string> {
  try {
    await f();
    return "";
  } catch (e) {
    return e instanceof ApiError ? e.message : String(e);
  }
}

export function Source(props: { source?: unknown }) {
  const s = typeof props.source === "string" ? props.source : "";
  return s ? <span class={`tag ${s}`}>{s}</span> : null;
}
