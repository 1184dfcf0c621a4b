// The panel's shell: sign-in, navigation (hash routes, so every page has a URL and the back button
// works), the theme switch, and the pages.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import "./style.css";
import { api, ApiError, get, Me, setCsrf, whenUnauthorized } from "./api";
import { Overview } from "./pages/overview";
import { Logs } from "./pages/logs";
import { Backends } from "./pages/backends";
import { Models } from "./pages/models";
import { Keys } from "./pages/keys";
import { Prices } from "./pages/prices";
import { Settings } from "./pages/settings";
import { Welcome } from "./pages/welcome";

const PAGES = [
  { id: "overview", title: "Overview", view: Overview },
  { id: "logs", title: "Logs", view: Logs },
  { id: "backends", title: "Backends", view: Backends },
  { id: "models", title: "Models", view: Models },
  { id: "keys", title: "Keys and orgs", view: Keys },
  { id: "prices", title: "Prices", view: Prices },
  { id: "settings", title: "Settings", view: Settings },
  { id: "welcome", title: "Get started", view: Welcome },
] as const;

function route(): { page: string; params: URLSearchParams } {
  const h = location.hash.replace(/^#\/?/, "");
  const [page, q] = h.split("?");
  return { page: page || "overview", params: new URLSearchParams(q ?? "") };
}

function useRoute() {
  const [r, setR] = useState(route());
  useEffect(() => {
    const f = () => setR(route());
    addEventListener("hashchange", f);
    return () => removeEventListener("hashchange", f);
  }, []);
  return r;
}

type Theme = "auto" | "dark" | "light";

const nextTheme: Record<Theme, Theme> = { auto: "dark", dark: "light", light: "auto" };

function applyTheme(t: Theme) {
  if (t === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
}

function Login(props: { onDone: (me: Me) => void }) {
  const [mode, setMode] = useState<"user" | "token">("user");
  const [name, setName] = useState("");
  const [secret, setSecret] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError("");
    try {
      const body = mode === "user" ? { name, password: secret } : { token: secret };
      const me = await api<Me>("POST", "/api/v1/login", body);
      props.onDone({ ...me, via: "session" });
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <form onSubmit={submit} aria-label="Sign in">
        <h1>
          <span class="logo" aria-hidden="true" /> OctoLLM
        </h1>
        <div class="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={mode === "user"} onClick={() => setMode("user")}>
            User
          </button>
          <button type="button" role="tab" aria-selected={mode === "token"} onClick={() => setMode("token")}>
            Admin token
          </button>
        </div>
        {mode === "user" && (
          <label>
            User name
            <input name="username" autoComplete="username" value={name} onInput={(e) => setName(e.currentTarget.value)} required autoFocus />
          </label>
        )}
        <label>
          {mode === "user" ? "Password" : "Admin token"}
          <input
            name={mode === "user" ? "password" : "token"}
            type="password"
            autoComplete={mode === "user" ? "current-password" : "off"}
            value={secret}
            onInput={(e) => setSecret(e.currentTarget.value)}
            required
          />
        </label>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <button class="primary" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}

function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [theme, setTheme] = useState<Theme>((localStorage.getItem("octollm-theme") as Theme) || "auto");
  const { page, params } = useRoute();
  useEffect(() => {
    applyTheme(theme);
    localStorage.setItem("octollm-theme", theme);
  }, [theme]);
  useEffect(() => {
    whenUnauthorized(() => setMe(null));
    get<Me>("/api/v1/me")
      .then((m) => {
        setCsrf(m.csrf_token ?? "");
        setMe(m);
      })
      .catch(() => setMe(null));
  }, []);
  if (me === undefined) return <main class="loading">Loading…</main>;
  if (me === null)
    return (
      <Login
        onDone={(m) => {
          setCsrf(m.csrf_token ?? "");
          setMe(m);
        }}
      />
    );
  const current = PAGES.find((p) => p.id === page) ?? PAGES[0];
  const View = current.view;
  const logout = async () => {
    try {
      await api("POST", "/api/v1/logout");
    } finally {
      setCsrf("");
      setMe(null);
    }
  };
  return (
    <div class="shell">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <nav aria-label="Pages">
        <div class="brand">
          <span class="logo" aria-hidden="true" /> OctoLLM
        </div>
        <ul>
          {PAGES.map((p) => (
            <li key={p.id}>
              <a href={`#/${p.id}`} aria-current={p.id === current.id ? "page" : undefined}>
                {p.title}
              </a>
            </li>
          ))}
        </ul>
        <div class="who">
          <span title={me.actor}>{me.name}</span>
          <button type="button" onClick={() => setTheme((t) => nextTheme[t])} title="Switch the colour theme">
            Theme: {theme}
          </button>
          <button type="button" onClick={logout}>
            Sign out
          </button>
        </div>
      </nav>
      <main id="main" tabIndex={-1}>
        <h1>{current.title}</h1>
        <View params={params} />
      </main>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
