//! `octo-mock`: runs the mock LLM upstream as a process for demos, scripts and benchmarks.
//!
//! Prints exactly one line, `octo-mock listening on http://ADDR`, once bound (so that scripts can
//! read the port chosen for `--listen 127.0.0.1:0`), then serves until SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use octo_mock::{MockConfig, MockServer};

/// Deterministic mock LLM upstream (OpenAI Chat, OpenAI Responses, Anthropic, Gemini).
#[derive(Debug, Parser)]
#[command(name = "octo-mock", version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Delay before every response head, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Extra deterministic pseudo-random delay of up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Pause between streamed events, in milliseconds.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Seed of the jitter sequence.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// HTTP/2 (h2c) streams one connection may have open at once.
    #[arg(long, default_value_t = 1024)]
    h2_max_streams: u32,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let config = MockConfig {
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        event_interval: Duration::from_millis(args.interval_ms),
        seed: args.seed,
        h2_max_concurrent_streams: Some(args.h2_max_streams),
    };
    let server = MockServer::start(args.listen, config).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "octo-mock listening on {}", server.url())?;
        stdout.flush()?;
    }
    shutdown_signal().await?;
    server.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
