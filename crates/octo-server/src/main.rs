//! `octollm-server`: the standalone OctoLLM gateway.
//!
//! The binary allocates with jemalloc (the `jemalloc` feature, on by default; never the library's
//! choice: `octo_server` as a dependency keeps its user's allocator), built with its background
//! thread on, which hands freed memory back to the system after `dirty_decay_ms` (10 s by
//! default). glibc's malloc keeps what a burst of connections freed in its arenas: after 10,000
//! HTTP/1.1 streams had closed, the gateway still held 98% of what they had taken (374 MiB,
//! idle 15 MiB); with jemalloc it settles at 32 MiB within 14 s, and executes about 14% fewer
//! instructions per request. It is built without its cache-oblivious offset for large allocations
//! (`disable_cache_oblivious`), which cost about 4.5 KiB per open HTTP/1.1 stream: with it, RSS
//! while 10,000 streams are open is glibc's (docs/performance.md, "Per-stream memory with
//! HTTP/1.1 clients"). Operators tune it with `_RJEM_MALLOC_CONF` (e.g. `dirty_decay_ms:1000`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use octo_core::http::shutdown_signal;
use octo_server::admin;
use octo_server::config::{Storage, StorageConfig};
use octo_server::startup::{AdminToken, Server, ServerOptions, StartError};
use octo_server::{Config, ConfigError, build, config, demo};
use octo_telemetry::logging::{LogFormat, init_logging};

/// An LLM gateway speaking OpenAI Chat, OpenAI Responses, Anthropic Messages and Gemini.
#[derive(Debug, Parser)]
#[command(
    name = "octollm-server",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// The YAML configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address, overriding the config's `listen`.
    #[arg(long, env = "OCTOLLM_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Run the demo: the gateway in front of an in-process mock upstream (no network, no API key).
    #[arg(long, conflicts_with = "config")]
    demo: bool,
    /// Validate the configuration and exit.
    #[arg(long)]
    check: bool,
    /// How often to check the config file for changes; `0` disables (SIGHUP always reloads).
    #[arg(long, value_name = "DURATION", default_value = "2s")]
    watch_interval: String,
    /// Log lines as `text` or `json` (one JSON object per line; one access line per request).
    #[arg(
        long,
        env = "OCTOLLM_LOG_FORMAT",
        value_name = "FORMAT",
        default_value = "text"
    )]
    log_format: String,
    /// The admin listener's address, overriding the config's `admin.listen` (`127.0.0.1:0`
    /// picks a free port; the address is printed).
    #[arg(long, env = "OCTOLLM_ADMIN_LISTEN", value_name = "ADDR")]
    admin_listen: Option<String>,
    /// The request log's database URL, or `off`, overriding the config's `storage`.
    #[arg(long, env = "OCTOLLM_STORAGE", value_name = "URL|off")]
    storage: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Reads an admin token on stdin and prints its `sha256:<hex>` form for `admin.tokens`.
    HashToken,
    /// Reads a password on stdin and prints its `argon2:` hash for `admin.users[].password`.
    HashPassword,
}

#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(feature = "demo")]
use octo_mock::MockServer as DemoUpstream;

/// Stands in for the demo's mock upstream in a build without the `demo` feature: never built.
#[cfg(not(feature = "demo"))]
enum DemoUpstream {}

#[cfg(not(feature = "demo"))]
impl DemoUpstream {
    fn url(&self) -> String {
        match *self {}
    }

    async fn shutdown(self) {
        match self {}
    }
}

/// Starts the mock upstream and the demo config in front of it.
#[cfg(feature = "demo")]
async fn start_demo() -> Result<(DemoUpstream, Config), Box<dyn std::error::Error>> {
    demo::start().await
}

/// The demo's own background traffic, so the panel's charts are not empty.
#[cfg(feature = "demo")]
fn start_demo_traffic(gateway: SocketAddr) {
    tokio::spawn(demo::traffic(gateway));
}

#[cfg(not(feature = "demo"))]
fn start_demo_traffic(_gateway: SocketAddr) {}

/// `--demo` in a build without the `demo` feature: an error saying how to get one.
#[cfg(not(feature = "demo"))]
async fn start_demo() -> Result<(DemoUpstream, Config), Box<dyn std::error::Error>> {
    Err(demo::UNAVAILABLE.into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::HashToken) = cli.command {
        let mut token = String::new();
        if std::io::stdin().read_line(&mut token).is_err() || token.trim().is_empty() {
            eprintln!("octollm-server hash-token: write the token on stdin");
            return ExitCode::FAILURE;
        }
        println!("{}", octo_server::admin::tokens::hashed(token.trim()));
        return ExitCode::SUCCESS;
    }
    if let Some(Command::HashPassword) = cli.command {
        return hash_password();
    }
    let Ok(format) = cli.log_format.parse::<LogFormat>() else {
        eprintln!(
            "octollm-server: --log-format `{}`: use `text` or `json`",
            cli.log_format
        );
        return ExitCode::FAILURE;
    };
    // The demo sends traffic of its own (for the panel's charts): its access log would bury the
    // banner, so the demo leaves it off unless OCTOLLM_LOG asks for it.
    let default_filter = if cli.demo {
        "info,octollm::access=off"
    } else {
        "info"
    };
    let filter = std::env::var("OCTOLLM_LOG").unwrap_or_else(|_| default_filter.to_owned());
    let _logging = match init_logging(format, &filter).or_else(|_| init_logging(format, "info")) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("octollm-server: cannot start logging: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("octollm-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(real_main(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("octollm-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `octollm-server hash-password`: the first line of stdin (without its line end) → `argon2:…`.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() {
        eprintln!("octollm-server hash-password: cannot read stdin");
        return ExitCode::FAILURE;
    }
    let password = line.trim_end_matches(['\n', '\r']);
    if password.chars().count() < admin::password::MIN_LEN {
        eprintln!(
            "octollm-server hash-password: write a password of at least {} characters on stdin",
            admin::password::MIN_LEN
        );
        return ExitCode::FAILURE;
    }
    match admin::password::hash(password) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("octollm-server hash-password: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--check`'s exit status when the file is valid but the database holding the admin API's
/// objects did not answer, so only the file was checked (1 is an invalid config; clap uses 2).
const CHECK_FILE_ONLY: u8 = 3;

async fn real_main(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (mock, mut config, source, document): (Option<DemoUpstream>, Config, String, _) =
        if cli.demo {
            let (mock, config) = start_demo().await?;
            let label = "examples/demo.yaml (built in)".to_owned();
            let url = mock.url();
            let env = move |name: &str| {
                if name == "OCTOLLM_DEMO_UPSTREAM" {
                    Some(url.clone())
                } else {
                    std::env::var(name).ok()
                }
            };
            let document = config::document(demo::DEMO_YAML, &label, &env)?;
            (Some(mock), config, label, document)
        } else {
            let Some(path) = cli.config.clone() else {
                return Err("give a config file with --config FILE (or try --demo)".into());
            };
            let source = path.display().to_string();
            let document = config::load_document(&path)?;
            let config = config::from_document(document.clone(), &source)?;
            (None, config, source, document)
        };
    let gateway = build(&config, &source)?;
    if let Some(storage) = &cli.storage {
        config.storage = match storage.as_str() {
            "off" => Storage::Off,
            url => {
                let mut s = match &config.storage {
                    Storage::On(s) => s.clone(),
                    Storage::Off => StorageConfig::default(),
                };
                s.url = url.to_owned();
                Storage::On(s)
            }
        };
    }
    if let Some(listen) = &cli.admin_listen {
        let mut admin = config.admin.clone().unwrap_or_default();
        admin.listen = listen.clone();
        config.admin = Some(admin);
    }
    // Where relative SQLite paths and the generated admin token live: beside the config file; for
    // the demo, a directory of its own under the system's temp dir (none for `--check`).
    let state_dir = match &cli.config {
        Some(path) => path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            })
            .unwrap_or(Path::new("."))
            .to_path_buf(),
        None => {
            let dir = std::env::temp_dir().join(format!("octollm-demo-{}", std::process::id()));
            if !cli.check {
                std::fs::create_dir_all(&dir)?;
            }
            dir
        }
    };
    if cli.check {
        return check(&config, &source, &document, &state_dir, cli.demo).await;
    }
    drop(gateway);
    let poll = match &cli.config {
        Some(_) => match cli.watch_interval.as_str() {
            "0" => None,
            interval => Some(
                config::parse_duration(interval).map_err(|m| format!("--watch-interval: {m}"))?,
            ),
        },
        None => None,
    };
    let banner = AdminBanner {
        demo: cli.demo,
        tokens_configured: config.admin.as_ref().is_some_and(|a| !a.tokens.is_empty()),
        users: config.admin.as_ref().is_some_and(|a| !a.users.is_empty()),
        token_file: admin::tokens::token_file(&state_dir),
        source: source.clone(),
    };
    let upstream = mock.as_ref().map(|m| m.url());
    let models = config.models.len();
    let options = ServerOptions {
        listen: cli.listen.unwrap_or(config.listen),
        config,
        document,
        label: source,
        file: cli.config.clone(),
        poll,
        state_dir,
        admin_token: if cli.demo {
            AdminToken::EachStart
        } else {
            AdminToken::FirstStart
        },
    };
    // Installed before the "listening" line: a SIGTERM right after it drains, not kills.
    let stop = shutdown_signal();
    let server = Server::start(options, |server| {
        let admin = match server.admin_addr() {
            Some(addr) => Some(banner.text(server, addr)?),
            None => None,
        };
        let addr = server.addr();
        let mut out = std::io::stdout().lock();
        if let Some(a) = &admin {
            let _ = writeln!(out, "{a}");
        }
        let _ = writeln!(out, "octollm-server listening on http://{addr}");
        if let Some(upstream) = &upstream {
            let _ = writeln!(out, "{}", demo::banner(addr, upstream));
            start_demo_traffic(addr);
        }
        let _ = out.flush();
        tracing::info!(%addr, models, "serving");
        Ok(())
    })
    .await?;
    server.run_until(stop).await?;
    if let Some(mock) = mock {
        mock.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--check`: the file is valid (checked by the caller); with storage on, the objects and keys
/// stored through the admin API are read (nothing is changed) and the merged config validated
/// as a start would. Exit status: 0 valid, 1 invalid (each problem with its key path, a name in
/// both places naming both), [`CHECK_FILE_ONLY`] when the database did not answer and only the
/// file was checked.
async fn check(
    config: &Config,
    source: &str,
    document: &serde_yaml_ng::Value,
    state_dir: &Path,
    demo: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let summary = |c: &Config| format!("{} backends, {} models", c.backends.len(), c.models.len());
    let url = match &config.storage {
        Storage::On(s) if !demo => octo_store::resolve_url(&s.url, state_dir),
        _ => {
            println!("{source}: OK ({})", summary(config));
            return Ok(ExitCode::SUCCESS);
        }
    };
    match octo_server::control::check_stored(document, source, &url, state_dir).await {
        Ok(checked) => {
            build(&checked.config, source)?;
            println!(
                "{source}: OK ({}) with {} objects and {} keys stored through the admin API",
                summary(&checked.config),
                checked.objects,
                checked.keys
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(octo_server::control::CheckError::Invalid(e)) => Err(e.into()),
        Err(octo_server::control::CheckError::Unreachable(why)) => {
            eprintln!(
                "octollm-server --check: the database (storage.url) did not answer ({why}): checked {source} alone, not the objects and keys stored through the admin API (exit status {CHECK_FILE_ONLY}; `--storage off` checks the file alone on purpose)"
            );
            println!("{source}: OK ({}) (the file alone)", summary(config));
            Ok(ExitCode::from(CHECK_FILE_ONLY))
        }
    }
}

/// How long the demo's one-time sign-in link stays valid.
const DEMO_LINK_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What the admin listener's banner says, printed before the listening line.
struct AdminBanner {
    demo: bool,
    /// Whether `admin.tokens` names any token.
    tokens_configured: bool,
    /// Whether `admin.users` names any user.
    users: bool,
    /// Where the first start's token digest lives.
    token_file: PathBuf,
    source: String,
}

impl AdminBanner {
    /// The URL, the admin token when this start made one (shown once), and how to open the web
    /// panel (for the demo, a one-time sign-in link).
    fn text(&self, server: &Server, addr: SocketAddr) -> Result<String, StartError> {
        let mut banner =
            format!("octollm-server admin on http://{addr} (web panel, admin API, /metrics)");
        match server.admin_token() {
            Some(token) => banner.push_str(&format!(
                "\nadmin token (shown once; set `admin.tokens` to choose your own): {token}\n  curl -s -H 'Authorization: Bearer {token}' http://{addr}/api/v1/logs"
            )),
            None if !self.tokens_configured => banner.push_str(&format!(
                "\nadmin token: the one printed at first start (its digest is in {}; delete that file to make a new one)",
                self.token_file.display()
            )),
            None => {}
        }
        if self.demo {
            let link = server
                .login_link("demo", DEMO_LINK_TTL)
                .map_err(|m| ConfigError::one(&self.source, "", m))?;
            banner.push_str(&format!("\nweb panel: open {link} (signs you in once)"));
        } else if !self.users {
            banner.push_str(&format!(
                "\nweb panel: http://{addr}/ (sign in with an admin token, or add users: `admin.users` or POST /api/v1/users)"
            ));
        } else {
            banner.push_str(&format!("\nweb panel: http://{addr}/"));
        }
        Ok(banner)
    }
}
