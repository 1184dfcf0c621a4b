//! `octollm-server`: the standalone OctoLLM gateway.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use octo_core::http::{SharedRouter, shutdown_signal};
use octo_server::{Config, build, config, demo, reload, run_shared};
use tracing_subscriber::EnvFilter;

/// An LLM gateway speaking OpenAI Chat, OpenAI Responses, Anthropic Messages and Gemini.
#[derive(Debug, Parser)]
#[command(name = "octollm-server", version, about)]
struct Cli {
    /// The YAML configuration file.
    #[arg(
        long,
        short = 'c',
        value_name = "FILE",
        required_unless_present = "demo"
    )]
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
}

/// The demo's mock upstream, running while `--demo` serves.
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

/// `--demo` in a build without the `demo` feature: an error saying how to get one.
#[cfg(not(feature = "demo"))]
async fn start_demo() -> Result<(DemoUpstream, Config), Box<dyn std::error::Error>> {
    Err(demo::UNAVAILABLE.into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("OCTOLLM_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("octollm-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn real_main(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let (mock, config, source): (Option<DemoUpstream>, Config, String) = if cli.demo {
        let (mock, config) = start_demo().await?;
        (
            Some(mock),
            config,
            "examples/demo.yaml (built in)".to_owned(),
        )
    } else {
        let path = cli.config.clone().unwrap_or_default();
        let config = config::load(&path)?;
        (None, config, path.display().to_string())
    };
    let gateway = build(&config, &source)?;
    if cli.check {
        println!(
            "{source}: OK ({} backends, {} models)",
            config.backends.len(),
            config.models.len()
        );
        return Ok(());
    }
    let listen = match cli.listen {
        Some(addr) => addr,
        None => config.listen,
    };
    let upstream = mock.as_ref().map(|m| m.url());
    let router = SharedRouter::new(gateway.router);
    let reloader = match &cli.config {
        Some(path) => {
            let poll = match cli.watch_interval.as_str() {
                "0" => None,
                interval => Some(
                    config::parse_duration(interval)
                        .map_err(|m| format!("--watch-interval: {m}"))?,
                ),
            };
            let reloader =
                reload::Reloader::new(path.clone(), router.clone(), config.clone(), poll);
            Some(tokio::spawn(reloader.run()))
        }
        None => None,
    };
    run_shared(
        router,
        gateway.serve,
        listen,
        |addr| {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "octollm-server listening on http://{addr}");
            if let Some(upstream) = &upstream {
                let _ = writeln!(out, "{}", demo::banner(addr, upstream));
            }
            let _ = out.flush();
            tracing::info!(%addr, models = config.models.len(), "serving");
        },
        shutdown_signal(),
    )
    .await?;
    if let Some(task) = reloader {
        task.abort();
    }
    if let Some(mock) = mock {
        mock.shutdown().await;
    }
    Ok(())
}
