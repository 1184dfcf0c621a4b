//! `octo-soak`: hours of mixed traffic against the real gateway and the mock, watching whether the
//! gateway's memory, open files and threads stay flat. `scripts/soak.sh` builds and runs it; see
//! `docs/reliability.md` ("Soak").
//!
//! The load, from `--workers` keep-alive HTTP/1.1 connections, cycles through a fixed mix:
//! passthrough and converted requests in all four protocols, streaming and not; upstream errors
//! (500, 429) passed on; mid-stream upstream errors; clients that leave in the middle of a stream;
//! and, every `--reload-every` seconds, a config reload (SIGHUP with a changed file). Every answer
//! is checked against what its kind must get; anything else is an unexpected error.
//!
//! Every `--sample-every` seconds it records the gateway's RSS, open files and threads. After the
//! run, the report (`report.json`, `report.md` under `--out`) compares the figures after warm-up
//! with those at the end. The goals: RSS growth after warm-up under `--max-rss-growth` percent,
//! open files and threads not growing, zero unexpected errors. The exit status is 1 when a goal
//! fails.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::BodyExt;
use octo_bench::client::{Conn, RequestSpec};
use octo_bench::procs::{self, Spawn};
use serde_json::{Value, json};
use tokio::sync::Mutex;

#[derive(Parser, Debug, Clone)]
#[command(about = "Mixed load against the gateway for a long time; reports memory, files, errors")]
struct Args {
    /// How long to run, in minutes (fractions allowed).
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// The share of the run treated as warm-up (figures before it are not judged).
    #[arg(long, default_value_t = 0.2)]
    warmup: f64,
    /// Concurrent client connections.
    #[arg(long, default_value_t = 8)]
    workers: usize,
    /// Seconds between two config reloads.
    #[arg(long, default_value_t = 30)]
    reload_every: u64,
    /// Seconds between two samples of the gateway's figures.
    #[arg(long, default_value_t = 5)]
    sample_every: u64,
    /// The largest acceptable RSS growth after warm-up, in percent.
    #[arg(long, default_value_t = 5.0)]
    max_rss_growth: f64,
    /// Where `octollm-server` and `octo-mock` are (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Run without the request log (`storage: off`), to tell its memory from the proxy's.
    #[arg(long)]
    no_storage: bool,
    /// Where the config, the request log and the report go.
    #[arg(long, default_value = "target/soak")]
    out: PathBuf,
}

/// One sample of the gateway's figures.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_s: f64,
    rss_kib: u64,
    fds: usize,
    threads: usize,
    requests: u64,
    /// Records waiting for the request log (`octollm_log_records_pending`).
    log_pending: u64,
}

/// Counters shared by the workers.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    expected_errors: AtomicU64,
    disconnects: AtomicU64,
    midstream_errors: AtomicU64,
    unexpected: AtomicU64,
}

/// What a request of the mix must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// 200, and a stream ends as its protocol's complete answer ends.
    Ok,
    /// This status, in the protocol's error shape.
    Status(u16),
    /// 200, then the stream ends with an in-band error.
    MidstreamError,
    /// The client reads the head and leaves.
    Disconnect,
}

const PROTOCOLS: [&str; 4] = ["openai_chat", "openai_responses", "anthropic", "gemini"];

/// The `i`-th request of the mix: (path, body, stream, expectation).
fn mix(i: u64) -> (String, String, bool, Expect) {
    let protocol = PROTOCOLS[(i % 4) as usize];
    let kind = (i / 4) % 16;
    let model = if kind % 2 == 0 {
        "soak"
    } else {
        "soak-converted"
    };
    let (text, stream, expect) = match kind {
        0..=5 => ("a soak request of some length", false, Expect::Ok),
        6..=10 => ("a streamed soak request [mock:events=24]", true, Expect::Ok),
        11 => ("fail [mock:status=500]", false, Expect::Status(500)),
        12 => (
            "busy [mock:status=429] [mock:retry_after=60]",
            false,
            Expect::Status(429),
        ),
        13 => (
            "break [mock:midstream_error=3]",
            true,
            Expect::MidstreamError,
        ),
        _ => (
            "leave [mock:events=200] [mock:interval_ms=20]",
            true,
            Expect::Disconnect,
        ),
    };
    let (path, body) = match protocol {
        "openai_chat" => (
            "/v1/chat/completions".to_owned(),
            json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}),
        ),
        "openai_responses" => (
            "/v1/responses".to_owned(),
            json!({"model": model, "stream": stream, "input": text}),
        ),
        "anthropic" => (
            "/v1/messages".to_owned(),
            json!({"model": model, "max_tokens": 64, "stream": stream, "messages": [{"role": "user", "content": text}]}),
        ),
        _ => (
            if stream {
                format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
            } else {
                format!("/v1beta/models/{model}:generateContent")
            },
            json!({"contents": [{"role": "user", "parts": [{"text": text}]}]}),
        ),
    };
    (path, body.to_string(), stream, expect)
}

/// Whether a streamed body in `protocol` (from its path) ends as a complete answer.
fn stream_complete(path: &str, body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let text = text.trim_end();
    if path.starts_with("/v1/chat") {
        text.ends_with("data: [DONE]")
    } else if path.starts_with("/v1/responses") {
        text.contains("event: response.completed")
    } else if path.starts_with("/v1/messages") {
        text.contains("event: message_stop")
    } else {
        text.contains("finishReason")
    }
}

/// Whether a streamed body ends with an in-band error.
fn stream_failed(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let last = text.trim_end().rsplit("\n\n").next().unwrap_or_default();
    last.contains("error") || last.contains("response.failed")
}

/// Runs one request of the mix on `conn`; `Err` describes an unexpected outcome.
async fn one(
    conn: &mut Conn,
    addr: std::net::SocketAddr,
    i: u64,
    counts: &Counts,
) -> Result<(), String> {
    let (path, body, stream, expect) = mix(i);
    let spec = RequestSpec::post(path.clone(), Bytes::from(body));
    if expect == Expect::Disconnect {
        let (status, mut incoming) = conn.open(&spec).await.map_err(|e| format!("{path}: {e}"))?;
        if status != 200 {
            return Err(format!("{path} (disconnect): status {status}"));
        }
        // The first chunk, then the client leaves: the connection is dropped with the body.
        let _ = tokio::time::timeout(Duration::from_secs(10), incoming.frame()).await;
        drop(incoming);
        *conn = Conn::connect(addr).await.map_err(|e| e.to_string())?;
        counts.disconnects.fetch_add(1, Ordering::Relaxed);
        return Ok(());
    }
    let (status, answer) = tokio::time::timeout(Duration::from_secs(60), conn.send(&spec))
        .await
        .map_err(|_| format!("{path}: no answer within 60 s"))?
        .map_err(|e| format!("{path}: {e}"))?;
    let status = status.as_u16();
    match expect {
        Expect::Ok if status == 200 && (!stream || stream_complete(&path, &answer)) => {
            counts.ok.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Expect::Status(want) if status == want => {
            let v: Value = serde_json::from_slice(&answer)
                .map_err(|e| format!("{path}: an error that is not JSON ({e})"))?;
            if v.get("error").is_none() {
                return Err(format!("{path}: an error without `error`: {v}"));
            }
            counts.expected_errors.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Expect::MidstreamError if status == 200 && stream_failed(&answer) => {
            counts.midstream_errors.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        _ => Err(format!(
            "{path} ({expect:?}): status {status}, body {}",
            String::from_utf8_lossy(&answer[..answer.len().min(300)])
        )),
    }
}

/// The gateway's config; `generation` changes on every reload (a model's description changes,
/// so the file differs and the whole graph is rebuilt).
/// The admin token of the soak's gateway (for `/metrics`).
const ADMIN_TOKEN: &str = "soak-admin-token-0123456789";

/// A metric's value from the admin listener's `/metrics` (`None` when unavailable).
async fn metric(admin: &str, name: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(admin).await.ok()?;
        let req = format!(
            "GET /metrics HTTP/1.1\r\nhost: {admin}\r\nauthorization: Bearer {ADMIN_TOKEN}\r\nconnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    };
    tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()
        .flatten()
}

fn config(mock: &str, admin: &str, generation: u64, storage: bool) -> String {
    let storage = if storage {
        r#"storage: {url: "sqlite://soak.db"}"#
    } else {
        "storage: off"
    };
    format!(
        r#"# octo-soak config, generation {generation}
listen: "127.0.0.1:0"
admin: {{listen: "{admin}", tokens: ["{ADMIN_TOKEN}"]}}
{storage}
backends:
  mock:
    base_url: "{mock}"
    protocol: [openai_chat, openai_responses, anthropic, gemini]
    api_key: "sk-soak"
    circuit_breaker: {{failures: 0}}
  mock_chat:
    base_url: "{mock}"
    protocol: openai_chat
    api_key: "sk-soak"
    circuit_breaker: {{failures: 0}}
models:
  soak: {{targets: [{{backend: mock}}], retry: {{max_attempts: 1}}}}
  soak-converted: {{targets: [{{backend: mock_chat}}], retry: {{max_attempts: 1}}}}
"#
    )
}

fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("octo-soak: {e}");
            std::process::exit(2);
        }
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let bin = |name: &str| -> Result<PathBuf, String> {
        match &args.bin_dir {
            Some(dir) => Ok(dir.join(name)),
            None => procs::sibling(name).ok_or(format!("{name} not found next to octo-soak")),
        }
    };
    std::fs::create_dir_all(&args.out).map_err(|e| e.to_string())?;
    let out = std::fs::canonicalize(&args.out).map_err(|e| e.to_string())?;
    for stale in ["soak.db", "soak.db-wal", "soak.db-shm"] {
        let _ = std::fs::remove_file(out.join(stale));
    }
    let timeout = Duration::from_secs(30);
    let mock = Spawn {
        name: "mock".into(),
        program: bin("octo-mock")?,
        args: vec!["--listen".into(), "127.0.0.1:0".into()],
        env: vec![],
        cpu: None,
        banner: "octo-mock listening on ".into(),
        timeout,
    }
    .start()?;
    let mock_url = format!("http://{}", mock.addr);
    let admin = format!(
        "127.0.0.1:{}",
        procs::free_port().map_err(|e| e.to_string())?
    );
    let config_path = out.join("soak.yaml");
    std::fs::write(&config_path, config(&mock_url, &admin, 0, !args.no_storage))
        .map_err(|e| e.to_string())?;
    let gateway = Spawn {
        name: "gateway".into(),
        program: bin("octollm-server")?,
        args: vec![
            "--config".into(),
            config_path.display().to_string(),
            "--watch-interval".into(),
            "0".into(),
        ],
        env: vec![("OCTOLLM_LOG".into(), "error".into())],
        cpu: None,
        banner: "octollm-server listening on ".into(),
        timeout,
    }
    .start()?;
    let pid = gateway.pid();
    let addr = gateway.addr;
    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let warmup = total.mul_f64(args.warmup.clamp(0.0, 0.9));
    println!(
        "octo-soak: {:.1} min against gateway pid {pid} ({} workers, warm-up {:.0} s, reload every {} s)",
        args.minutes,
        args.workers,
        warmup.as_secs_f64(),
        args.reload_every
    );

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..args.workers {
        let (counts, stop, next, failures) =
            (counts.clone(), stop.clone(), next.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            let mut conn = match Conn::connect(addr).await {
                Ok(c) => c,
                Err(e) => {
                    failures.lock().await.push(format!("connect: {e}"));
                    counts.unexpected.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = one(&mut conn, addr, i, &counts).await {
                    counts.unexpected.fetch_add(1, Ordering::Relaxed);
                    let mut f = failures.lock().await;
                    if f.len() < 50 {
                        f.push(e);
                    }
                    if let Ok(c) = Conn::connect(addr).await {
                        conn = c;
                    }
                }
            }
        }));
    }

    let start = Instant::now();
    let mut samples = Vec::new();
    let mut reloads = 0u64;
    let mut last_reload = Instant::now();
    let sample_every = Duration::from_secs(args.sample_every.max(1));
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    while start.elapsed() < total {
        tokio::select! {
            () = tokio::time::sleep(sample_every.min(total.saturating_sub(start.elapsed()))) => {}
            _ = &mut interrupted => {
                // Stop the mock and the gateway (dropped below) and report what was sampled.
                println!("octo-soak: interrupted");
                break;
            }
        }
        if last_reload.elapsed() >= Duration::from_secs(args.reload_every.max(1)) {
            reloads += 1;
            std::fs::write(
                &config_path,
                config(&mock_url, &admin, reloads, !args.no_storage),
            )
            .map_err(|e| e.to_string())?;
            let _ = std::process::Command::new("kill")
                .args(["-HUP", &pid.to_string()])
                .status();
            last_reload = Instant::now();
        }
        let sample = Sample {
            at_s: start.elapsed().as_secs_f64(),
            rss_kib: procs::rss_kib(pid).ok_or("the gateway exited")?,
            fds: procs::fd_count(pid).unwrap_or(0),
            threads: threads(pid),
            requests: next.load(Ordering::Relaxed),
            log_pending: metric(&admin, "octollm_log_records_pending")
                .await
                .map_or(0, |v| v as u64),
        };
        println!(
            "  {:>6.0} s  RSS {:>7.1} MiB  files {:>4}  threads {:>3}  requests {:>8}  log pending {:>6}  unexpected {}",
            sample.at_s,
            sample.rss_kib as f64 / 1024.0,
            sample.fds,
            sample.threads,
            sample.requests,
            sample.log_pending,
            counts.unexpected.load(Ordering::Relaxed)
        );
        samples.push(sample);
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    // Idle again: what the gateway holds once the load has stopped.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_fds = procs::fd_count(pid).unwrap_or(0);
    let idle_rss = procs::rss_kib(pid).unwrap_or(0);
    let log_dropped = metric(&admin, "octollm_log_records_dropped_total")
        .await
        .map_or(0, |v| v as u64);

    // Judge: medians of the first tenth after warm-up and of the last tenth of the run.
    let after: Vec<Sample> = samples
        .iter()
        .copied()
        .filter(|s| s.at_s >= warmup.as_secs_f64())
        .collect();
    let window = (after.len() / 10).max(1);
    let first = &after[..window.min(after.len())];
    let last = &after[after.len().saturating_sub(window)..];
    let pick = |w: &[Sample], f: fn(&Sample) -> f64| median(w.iter().map(f).collect());
    let rss0 = pick(first, |s| s.rss_kib as f64);
    let rss1 = pick(last, |s| s.rss_kib as f64);
    let growth = if rss0 > 0.0 {
        (rss1 - rss0) / rss0 * 100.0
    } else {
        0.0
    };
    let fds0 = pick(first, |s| s.fds as f64);
    let fds1 = pick(last, |s| s.fds as f64);
    let threads0 = pick(first, |s| s.threads as f64);
    let threads_max = after.iter().map(|s| s.threads).max().unwrap_or(0) as f64;
    let unexpected = counts.unexpected.load(Ordering::Relaxed);
    let requests = next.load(Ordering::Relaxed);
    // In-flight connections vary with what the workers happen to be doing: allow one per worker.
    let fd_margin = args.workers as f64 + 4.0;
    let goals = [
        (
            format!("RSS growth after warm-up < {}%", args.max_rss_growth),
            growth < args.max_rss_growth,
            format!(
                "{growth:+.2}% ({:.1} → {:.1} MiB)",
                rss0 / 1024.0,
                rss1 / 1024.0
            ),
        ),
        (
            "open files stable".to_owned(),
            fds1 <= fds0 + fd_margin,
            format!("{fds0:.0} → {fds1:.0} (margin {fd_margin:.0}); idle after the run {idle_fds}"),
        ),
        (
            "threads stable".to_owned(),
            threads_max <= threads0 + 4.0,
            format!("{threads0:.0} after warm-up, at most {threads_max:.0}"),
        ),
        (
            "zero unexpected errors".to_owned(),
            unexpected == 0,
            format!("{unexpected} of {requests} requests"),
        ),
        (
            "enough samples after warm-up".to_owned(),
            after.len() >= 4,
            format!("{} samples", after.len()),
        ),
    ];
    let pass = goals.iter().all(|(_, ok, _)| *ok);
    let failures = failures.lock().await.clone();

    let report = json!({
        "minutes": args.minutes,
        "workers": args.workers,
        "warmup_s": warmup.as_secs_f64(),
        "reloads": reloads,
        "requests": requests,
        "ok": counts.ok.load(Ordering::Relaxed),
        "expected_errors": counts.expected_errors.load(Ordering::Relaxed),
        "midstream_errors": counts.midstream_errors.load(Ordering::Relaxed),
        "client_disconnects": counts.disconnects.load(Ordering::Relaxed),
        "unexpected_errors": unexpected,
        "first_unexpected": failures,
        "rss_kib_after_warmup": rss0,
        "rss_kib_end": rss1,
        "rss_growth_percent": growth,
        "rss_kib_idle_after": idle_rss,
        "fds_after_warmup": fds0,
        "fds_end": fds1,
        "fds_idle_after": idle_fds,
        "threads_after_warmup": threads0,
        "threads_max": threads_max,
        "goals": goals.iter().map(|(g, ok, v)| json!({"goal": g, "pass": ok, "value": v})).collect::<Vec<_>>(),
        "pass": pass,
        "log_records_dropped": log_dropped,
        "samples": samples.iter().map(|s| json!({"at_s": s.at_s, "rss_kib": s.rss_kib, "fds": s.fds, "threads": s.threads, "requests": s.requests, "log_pending": s.log_pending})).collect::<Vec<_>>(),
    });
    let json_path = out.join("report.json");
    std::fs::write(
        &json_path,
        serde_json::to_vec_pretty(&report).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    let mut md = format!(
        "# Soak report\n\n{:.1} minutes, {} workers, warm-up {:.0} s, {reloads} config reloads, {requests} requests \
         ({} ok, {} expected upstream errors, {} mid-stream errors, {} client disconnects, {unexpected} unexpected).\n\n\
         | goal | result | value |\n|---|---|---|\n",
        args.minutes,
        args.workers,
        warmup.as_secs_f64(),
        counts.ok.load(Ordering::Relaxed),
        counts.expected_errors.load(Ordering::Relaxed),
        counts.midstream_errors.load(Ordering::Relaxed),
        counts.disconnects.load(Ordering::Relaxed),
    );
    for (goal, ok, value) in &goals {
        md.push_str(&format!(
            "| {goal} | {} | {value} |\n",
            if *ok { "pass" } else { "FAIL" }
        ));
    }
    md.push_str(&format!(
        "\nRequest log: {log_dropped} records dropped; idle after the run: RSS {:.1} MiB, {idle_fds} open files.\n",
        idle_rss as f64 / 1024.0
    ));
    md.push_str("\n| time (s) | RSS (MiB) | open files | threads | requests | log pending |\n|---:|---:|---:|---:|---:|---:|\n");
    let step = (samples.len() / 20).max(1);
    for s in samples.iter().step_by(step).chain(samples.last()) {
        md.push_str(&format!(
            "| {:.0} | {:.1} | {} | {} | {} | {} |\n",
            s.at_s,
            s.rss_kib as f64 / 1024.0,
            s.fds,
            s.threads,
            s.requests,
            s.log_pending
        ));
    }
    if !failures.is_empty() {
        md.push_str("\nFirst unexpected errors:\n\n");
        for f in &failures {
            md.push_str(&format!("- `{}`\n", f.replace('`', "'")));
        }
    }
    std::fs::write(out.join("report.md"), &md).map_err(|e| e.to_string())?;
    println!("\n{md}");
    println!(
        "octo-soak: {} (report in {})",
        if pass { "PASS" } else { "FAIL" },
        json_path.display()
    );
    drop(gateway);
    drop(mock);
    Ok(pass)
}
