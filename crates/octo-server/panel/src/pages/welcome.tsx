// Get started: add a first real backend and the models it serves, in one form (the desktop app
// opens this page on its first run, when only the built-in mock upstream answers). It writes
// through the admin API (POST /api/v1/backends, then POST /api/v1/models per model), so the
// gateway switches over without a restart; the Backends and Models pages edit the result.
import { useState } from "preact/hooks";
import { api, ApiError, list } from "../api";
import { useResource } from "../ui";

interface Provider {
  label: string;
  base_url: string;
  protocol: string;
  models: string;
}

export const PROVIDERS: Record<string, Provider> = {
  openai: { label: "OpenAI", base_url: "https://api.openai.com", protocol: "openai_chat", models: "gpt-4.1, gpt-4.1-mini" },
  anthropic: { label: "Anthropic", base_url: "https://api.anthropic.com", protocol: "anthropic", models: "claude-sonnet-4-5, claude-haiku-4-5" },
  gemini: { label: "Google Gemini", base_url: "https://generativelanguage.googleapis.com", protocol: "gemini", models: "gemini-2.5-flash, gemini-2.5-pro" },
  openrouter: { label: "OpenRouter", base_url: "https://openrouter.ai/api", protocol: "openai_chat", models: "openai/gpt-4.1-mini" },
  other: { label: "Other (OpenAI-compatible)", base_url: "http://127.0.0.1:11434", protocol: "openai_chat", models: "" },
};

/** The model names of a comma- or space-separated list, without duplicates. */
export function modelNames(text: string): string[] {
  return [...new Set(text.split(/[\s,]+/).filter((s) => s.length > 0))];
}

export function Welcome() {
  const backends = useResource<unknown>("/api/v1/backends");
  const [provider, setProvider] = useState("openai");
  const [name, setName] = useState("openai");
  const [baseUrl, setBaseUrl] = useState(PROVIDERS.openai.base_url);
  const [key, setKey] = useState("");
  const [models, setModels] = useState(PROVIDERS.openai.models);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");
  const [done, setDone] = useState<string[] | null>(null);

  const pick = (id: string) => {
    setProvider(id);
    setName(id);
    setBaseUrl(PROVIDERS[id].base_url);
    setModels(PROVIDERS[id].models);
  };
  const existing = list<{ name: string; base_url?: string }>(backends.data);
  const mockOnly = existing.length > 0 && existing.every((b) => /127\.0\.0\.1|localhost/.test(String(b.base_url ?? "")));

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    const p = PROVIDERS[provider];
    try {
      await api("POST", "/api/v1/backends", { name, base_url: baseUrl, protocol: p.protocol, api_keys: key ? [key] : [] });
      const added: string[] = [];
      for (const m of modelNames(models)) {
        try {
          await api("POST", "/api/v1/models", { name: m, targets: [{ backend: name, model: m }] });
          added.push(m);
        } catch (err) {
          throw new Error(`backend ${name} added; model ${m}: ${err instanceof ApiError ? err.message : String(err)}`);
        }
      }
      setDone(added);
      backends.reload();
    } catch (err) {
      setError(err instanceof ApiError || err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section aria-label="Get started" class="welcome">
      <p>
        {mockOnly
          ? "This gateway answers with its built-in mock upstream: it works without a key, but the answers are made up. "
          : ""}
        Add the provider you have a key for; the gateway uses it at once (no restart).
      </p>
      {done ? (
        <div class="notice" role="status">
          <strong>Backend {name} added</strong>
          {done.length > 0 ? ` with ${done.join(", ")}` : ""}. Point your tools at the gateway with one of these model names; the{" "}
          <a href="#/backends">Backends</a> page tests the key, and <a href="#/models">Models</a> edits the routing.
        </div>
      ) : (
        <form onSubmit={submit} class="form" aria-label="Add a backend">
          <label>
            Provider
            <select value={provider} onChange={(e) => pick(e.currentTarget.value)}>
              {Object.entries(PROVIDERS).map(([id, p]) => (
                <option key={id} value={id}>
                  {p.label}
                </option>
              ))}
            </select>
          </label>
          <label>
            Backend name
            <input value={name} onInput={(e) => setName(e.currentTarget.value)} required />
          </label>
          <label>
            Base URL
            <input value={baseUrl} onInput={(e) => setBaseUrl(e.currentTarget.value)} required />
          </label>
          <label>
            API key <span class="muted small">(stored sealed in the database, never shown again)</span>
            <input type="password" autoComplete="off" value={key} onInput={(e) => setKey(e.currentTarget.value)} />
          </label>
          <label>
            Models to expose <span class="muted small">(comma-separated; each is routed to the same name upstream)</span>
            <input value={models} onInput={(e) => setModels(e.currentTarget.value)} />
          </label>
          {error && (
            <p class="error" role="alert">
              {error}
            </p>
          )}
          <button class="primary" disabled={busy}>
            Add backend
          </button>
        </form>
      )}
    </section>
  );
}
