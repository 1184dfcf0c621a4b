//! Where the desktop app keeps its files, and the starter config written on first run.
//!
//! One directory holds everything: `config.yaml` (the gateway's config, which the user may edit:
//! tray → Open Config, applied on Restart), `octollm.db` (the request log, statistics, and what
//! the panel adds: backends, models, keys) and the sealing key for upstream keys added in the
//! panel. It is the platform's data directory (`dirs::data_dir()`): `~/.local/share/OctoLLM` on
//! Linux (`$XDG_DATA_HOME`), `~/Library/Application Support/OctoLLM` on macOS,
//! `%APPDATA%\OctoLLM` on Windows; `OCTOLLM_DESKTOP_DIR` overrides it (tests, portable installs).

use std::path::{Path, PathBuf};

/// The environment variable that overrides the data directory.
pub const DIR_ENV: &str = "OCTOLLM_DESKTOP_DIR";

/// The `${…}` variable the starter config uses for the in-process mock upstream's URL; the app
/// supplies it (see [`crate::gateway`]), it is not read from the environment.
pub const MOCK_VAR: &str = "OCTOLLM_DESKTOP_MOCK";

/// The config written on first run: the gateway on loopback in front of the in-process mock
/// upstream (no network, no key), the request log in SQLite beside it, the admin panel on a free
/// loopback port.
pub const STARTER_CONFIG: &str = r#"# OctoLLM desktop: the gateway's configuration (docs/config.md has every key).
# Edits apply when you choose Restart in the tray menu. Backends, models and keys added in the
# web panel (Open Panel) are stored in octollm.db beside this file, not here.
#
# Point your tools at the gateway:
#   OpenAI SDKs / Codex:   base_url http://127.0.0.1:8080/v1
#   Anthropic / Claude Code: ANTHROPIC_BASE_URL=http://127.0.0.1:8080
listen: "127.0.0.1:8080"

# The web panel and admin API, on loopback only (port 0: a free port each start; the tray's
# Open Panel signs you in).
admin:
  listen: "127.0.0.1:0"

storage:
  url: "sqlite://octollm.db"

# Until you add a real backend (panel → Get started), every model is answered by a mock upstream
# that runs inside the app: no network, no API key.
backends:
  mock:
    base_url: "${OCTOLLM_DESKTOP_MOCK}"
    protocol: [openai_chat, openai_responses, anthropic, gemini]
    api_key: "mock-upstream-key"

# The mock's models have names of their own, so that the real models you add in the panel
# (gpt-4.1, claude-sonnet-4-5, …) never clash with them; delete these once you have real ones.
models:
  mock-gpt:
    targets:
      - {backend: mock, model: mock-gpt-4o-mini}
  mock-claude:
    targets:
      - {backend: mock, model: mock-claude}
  mock-gemini:
    targets:
      - {backend: mock, model: mock-gemini}

# USD per million tokens, so the tray's "cost today" has something to add up for the mock.
prices:
  mock-gpt-4o-mini: {input: 0.15, output: 0.6}
  mock-claude: {input: 3, output: 15}
  mock-gemini: {input: 0.3, output: 2.5}
"#;

/// The app's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The data directory.
    pub dir: PathBuf,
    /// `config.yaml` in it.
    pub config: PathBuf,
}

impl Paths {
    /// The files under `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Paths {
        let dir = dir.into();
        Paths {
            config: dir.join("config.yaml"),
            dir,
        }
    }

    /// `$OCTOLLM_DESKTOP_DIR`, else `OctoLLM` in the platform's data directory.
    ///
    /// # Errors
    /// When neither is known (no home directory).
    pub fn from_env() -> Result<Paths, String> {
        if let Some(dir) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
            return Ok(Paths::at(dir));
        }
        dirs::data_dir()
            .map(|d| Paths::at(d.join("OctoLLM")))
            .ok_or_else(|| format!("no data directory for this user: set {DIR_ENV}"))
    }

    /// Creates the directory and, when there is none, the starter config. Returns whether this
    /// was the first run (the config was written now).
    ///
    /// # Errors
    /// When the directory or the file cannot be written.
    pub fn ensure(&self) -> std::io::Result<bool> {
        std::fs::create_dir_all(&self.dir)?;
        if self.config.exists() {
            return Ok(false);
        }
        write_new(&self.config, STARTER_CONFIG)?;
        Ok(true)
    }
}

/// Writes `text` to a new file (never over an existing one).
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_writes_the_starter_config_once() {
        let dir = std::env::temp_dir().join(format!("octo-desktop-paths-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let paths = Paths::at(dir.join("nested"));
        assert!(paths.ensure().unwrap());
        assert_eq!(
            std::fs::read_to_string(&paths.config).unwrap(),
            STARTER_CONFIG
        );
        std::fs::write(&paths.config, "listen: 127.0.0.1:1\n").unwrap();
        assert!(!paths.ensure().unwrap(), "an existing config is kept");
        assert_eq!(
            std::fs::read_to_string(&paths.config).unwrap(),
            "listen: 127.0.0.1:1\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
