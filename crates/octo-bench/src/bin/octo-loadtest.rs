//! `octo-loadtest`: the end-to-end load harness.
//!
//! Starts the mock upstream (`octo-mock`, zero delay), the floor (`octo-floor`) and the gateway
//! (`octollm-server`) as separate processes — the load generator and the mock on CPU 0, the proxy
//! under test on CPU 1 when there are two CPUs and `taskset` — measures all of them with the same
//! client, prints a table and writes JSON (`target/loadtest/results.json` by default).
//!
//! Run it with `scripts/loadtest.sh` (builds the release binaries first); `--quick` takes seconds.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use octo_bench::client::{self, RequestSpec};
use octo_bench::otlp_sink::OtlpSink;
use octo_bench::payload;
use octo_bench::procs::{self, Proc, Spawn};
use octo_bench::scenario::{self, ManyStreams, OpenStep, Target, Transport};
use octo_bench::stats::Summary;
use serde::Serialize;
use serde_json::{Value, json};

/// End-to-end load harness: the mock, the floor (a bare hyper proxy) and the gateway, measured alike.
#[derive(Debug, Parser)]
#[command(name = "octo-loadtest", version, about)]
struct Args {
    /// A short run (seconds): smaller counts, fewer rates, 500 open streams.
    #[arg(long)]
    quick: bool,
    /// The smallest run that exercises every measurement (CI: checks that the harness works;
    /// the numbers mean nothing).
    #[arg(long, conflicts_with = "quick")]
    smoke: bool,
    /// Do not pin processes to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Where to write the JSON results.
    #[arg(long, default_value = "target/loadtest/results.json")]
    out: PathBuf,
    /// Streams to hold open for the memory measurement (default 10000; 500 with --quick).
    #[arg(long)]
    streams: Option<usize>,
    /// Skip the many-open-streams memory measurement.
    #[arg(long)]
    skip_memory: bool,
    /// Skip the open-loop throughput sweep.
    #[arg(long)]
    skip_throughput: bool,
    /// Measure only memory (idle, and many open streams over HTTP/1.1 and h2c): skip latency,
    /// conversion, streaming and throughput.
    #[arg(long)]
    memory_only: bool,
    /// Skip the h2c rows of the many-open-streams measurement (HTTP/1.1 only).
    #[arg(long)]
    no_h2c: bool,
    /// Streams the load generator multiplexes on one HTTP/2 connection in the h2c rows (hyper's
    /// servers accept 200 at once by default).
    #[arg(long, default_value_t = 100)]
    h2_streams_per_conn: usize,
    /// The LiteLLM proxy executable to measure side by side (default:
    /// target/litellm-venv/bin/litellm when it exists).
    #[arg(long)]
    litellm: Option<PathBuf>,
    /// Do not measure LiteLLM even if it is installed.
    #[arg(long)]
    no_litellm: bool,
    /// Directory holding octo-mock, octo-floor and octollm-server (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Extra environment for the gateway process, `KEY=VALUE` (repeatable; e.g. to try an
    /// allocator with `LD_PRELOAD=…`).
    #[arg(long, value_name = "KEY=VALUE")]
    gateway_env: Vec<String>,
    /// Extra environment for the floor process, `KEY=VALUE` (repeatable; e.g. the gateway's
    /// allocator preloaded into the floor, to tell the allocator's share of a memory figure from
    /// the gateway's own).
    #[arg(long, value_name = "KEY=VALUE")]
    floor_env: Vec<String>,
    /// Only drive load: send `--drive-requests` requests one at a time to a server already
    /// listening at this address (for profiling a gateway started by hand), then exit.
    #[arg(long, value_name = "HOST:PORT")]
    drive: Option<SocketAddr>,
    /// Requests sent by `--drive`.
    #[arg(long, default_value_t = 2000)]
    drive_requests: usize,
    /// Body size sent by `--drive`, in bytes.
    #[arg(long, default_value_t = 160)]
    drive_bytes: usize,
    /// Send `stream: true` with `--drive` (64 events, no pacing).
    #[arg(long)]
    drive_stream: bool,
    /// With `--drive`: instead of sequential requests, hold this many streams (events 3 s apart)
    /// open at once over h2c (HTTP/1.1 with `--drive-http1`) for `--drive-hold-secs`, then close
    /// them (for profiling a gateway's memory by hand, e.g. under heaptrack).
    #[arg(long, default_value_t = 0)]
    drive_open: usize,
    /// `--drive-open` over HTTP/1.1, one connection per stream.
    #[arg(long)]
    drive_http1: bool,
    /// How long `--drive-open` keeps the streams open, in seconds.
    #[arg(long, default_value_t = 5)]
    drive_hold_secs: u64,
    /// The model `--drive` requests name.
    #[arg(long, default_value = PASSTHROUGH_MODEL)]
    drive_model: String,
    /// Send Anthropic Messages requests (`/v1/messages`) with `--drive` instead of OpenAI Chat
    /// (with `--drive-model bench-convert`: the conversion path, Anthropic client → OpenAI-chat
    /// upstream).
    #[arg(long)]
    drive_anthropic: bool,
    /// Also measure the operations half: a gateway with the request log (SQLite in a temp dir),
    /// metrics and traces (OTLP to an in-harness sink) on, against one with them off, at 160 B:
    /// added latency at c=1 and the highest rate with p99 < 50 ms.
    #[arg(long)]
    ops_compare: bool,
    /// Only the operations comparison (implies `--ops-compare`; skips every other measurement).
    #[arg(long)]
    ops_only: bool,
}

/// Sizes and durations of one run.
#[derive(Debug, Clone, Copy)]
struct Plan {
    latency_iters: [(usize, usize); 5],
    warmup: usize,
    batch: usize,
    stream_concurrency: usize,
    stream_rounds: usize,
    estimate: Duration,
    step: Duration,
    conns: usize,
    max_steps: usize,
    bisect: usize,
    streams: usize,
}

impl Plan {
    fn new(quick: bool, smoke: bool) -> Plan {
        if smoke {
            Plan {
                latency_iters: [
                    (160, 40),
                    (1024, 40),
                    (4096, 20),
                    (100 * 1024, 10),
                    (1 << 20, 4),
                ],
                warmup: 5,
                batch: 10,
                stream_concurrency: 2,
                stream_rounds: 1,
                estimate: Duration::from_millis(200),
                step: Duration::from_millis(200),
                conns: 8,
                max_steps: 2,
                bisect: 0,
                streams: 50,
            }
        } else if quick {
            Plan {
                latency_iters: [
                    (160, 400),
                    (1024, 400),
                    (4096, 300),
                    (100 * 1024, 60),
                    (1 << 20, 20),
                ],
                warmup: 30,
                batch: 50,
                stream_concurrency: 4,
                stream_rounds: 1,
                estimate: Duration::from_millis(300),
                step: Duration::from_millis(500),
                conns: 32,
                max_steps: 4,
                bisect: 1,
                streams: 500,
            }
        } else {
            Plan {
                latency_iters: [
                    (160, 10_000),
                    (1024, 10_000),
                    (4096, 5_000),
                    (100 * 1024, 1_000),
                    (1 << 20, 300),
                ],
                warmup: 300,
                batch: 100,
                stream_concurrency: 16,
                stream_rounds: 2,
                estimate: Duration::from_secs(1),
                step: Duration::from_secs(3),
                conns: 64,
                max_steps: 12,
                bisect: 3,
                streams: 10_000,
            }
        }
    }
}

const P99_LIMIT: Duration = Duration::from_millis(50);
const PASSTHROUGH_MODEL: &str = "bench-model";
/// `bench-model` on a backend the gateway reaches over h2c (`http_version: h2c`).
const H2C_MODEL: &str = "bench-h2c";
const CONVERT_MODEL: &str = "bench-convert";
const CHAT_PATH: &str = "/v1/chat/completions";
const MESSAGES_PATH: &str = "/v1/messages";
/// The admin listener's token in the gateways' configs (set, so that none is generated and printed).
const ADMIN_TOKEN: &str = "octo-loadtest-admin-token-0123456789";
/// The SQLite request log of the operations-on gateway, beside its config in a temp dir.
const OPS_DB: &str = "ops.db";
/// The LiteLLM proxy refuses to start without a master key; requests to it carry this one.
const LITELLM_KEY: &str = "sk-octo-loadtest-0123456789abcdef0123456789abcdef";

/// `spec`, with the LiteLLM master key when `target` is LiteLLM.
fn auth_for(target: &Target, spec: RequestSpec) -> RequestSpec {
    if target.name == "litellm" {
        spec.header("authorization", format!("Bearer {LITELLM_KEY}"))
    } else {
        spec
    }
}

#[derive(Debug, Clone, Serialize)]
struct LatencyRow {
    payload_bytes: usize,
    target: String,
    latency: Summary,
    errors: usize,
    added_p50_us: Option<f64>,
    added_p99_us: Option<f64>,
    /// This target's added latency over the floor's.
    ratio_p50: Option<f64>,
    ratio_p99: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct StreamRow {
    target: String,
    first_byte: Summary,
    gap: Summary,
    added_first_byte_p50_us: Option<f64>,
    added_first_byte_p99_us: Option<f64>,
    added_gap_p50_us: Option<f64>,
    added_gap_p99_us: Option<f64>,
    min_events: usize,
    stalls: usize,
    errors: usize,
}

#[derive(Debug, Clone, Serialize)]
struct ThroughputRow {
    target: String,
    closed_loop_estimate_rps: f64,
    max_rps_p99_under_50ms: f64,
    cpu_us_per_req: Option<f64>,
    proxy_cores_at_max: Option<f64>,
    steps: Vec<OpenStep>,
}

#[derive(Debug, Clone, Serialize)]
struct Verdict {
    target: String,
    measured: String,
    met: Option<bool>,
}

fn main() {
    let mut args = Args::parse();
    if args.ops_only {
        args.ops_compare = true;
        args.memory_only = true;
        args.skip_memory = true;
    }
    let result = match args.drive {
        Some(addr) => drive(addr, &args),
        None => run(&args),
    };
    if let Err(e) = result {
        eprintln!("octo-loadtest: {e}");
        std::process::exit(1);
    }
}

/// `--drive`: sequential requests to a server started by hand (e.g. under a profiler).
fn drive(addr: SocketAddr, args: &Args) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    if args.drive_open > 0 {
        let spec = RequestSpec::post(
            CHAT_PATH,
            payload::chat(
                160,
                &args.drive_model,
                true,
                "[mock:events=100][mock:interval_ms=3000]",
            ),
        );
        let target = Target {
            name: "driven".into(),
            addr,
            pid: None,
        };
        let transport = if args.drive_http1 {
            Transport::Http1
        } else {
            Transport::H2c {
                streams_per_conn: args.h2_streams_per_conn,
            }
        };
        let m = rt.block_on(async {
            let hold = async {
                tokio::time::sleep(Duration::from_secs(args.drive_hold_secs)).await;
            };
            scenario::many_streams_holding(
                &target,
                &spec,
                args.drive_open,
                128,
                transport,
                0,
                Duration::from_secs(150),
                hold,
            )
            .await
        });
        println!(
            "{} of {} {} streams open at once through {addr} ({} failed)",
            m.open,
            m.requested,
            if args.drive_http1 { "HTTP/1.1" } else { "h2c" },
            m.failed
        );
        return Ok(());
    }
    let directives = if args.drive_stream {
        "[mock:events=64]"
    } else {
        ""
    };
    let spec = if args.drive_anthropic {
        let body = payload::anthropic(
            args.drive_bytes,
            &args.drive_model,
            args.drive_stream,
            directives,
        );
        RequestSpec::post(MESSAGES_PATH, body).header("anthropic-version", "2023-06-01")
    } else {
        let body = payload::chat(
            args.drive_bytes,
            &args.drive_model,
            args.drive_stream,
            directives,
        );
        RequestSpec::post(CHAT_PATH, body)
    };
    let target = Target {
        name: "driven".into(),
        addr,
        pid: None,
    };
    let results = rt.block_on(scenario::closed_loop(
        std::slice::from_ref(&target),
        &|_| spec.clone(),
        args.drive_requests,
        0,
        100,
        Duration::from_secs(600),
    ));
    let s = results[0].samples.summary();
    println!(
        "{} requests to {addr}: p50 {:.0} µs, p99 {:.0} µs, errors {}",
        s.count, s.p50_us, s.p99_us, results[0].errors
    );
    Ok(())
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn loadavg() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn machine() -> Value {
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    json!({
        "cpus": cpus,
        "cpu_model": model,
        "mem_total_mib": mem_kib / 1024,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
    })
}

fn find_bin(dir: Option<&Path>, name: &str) -> Result<PathBuf, String> {
    let found = match dir {
        Some(d) => Some(d.join(name)).filter(|p| p.is_file()),
        None => procs::sibling(name),
    };
    found.ok_or_else(|| {
        format!(
            "`{name}` not found next to this binary; build everything first:\n  \
             cargo build --release -p octo-bench -p octo-server -p octo-mock\n\
             or run scripts/loadtest.sh, which does"
        )
    })
}

/// The gateway's config: the models and backends below, the admin listener on an ephemeral port
/// with a fixed token. The request log is chosen on the command line (`--storage off`) or, for the
/// operations-on gateway, by [`ops_on_config`].
fn gateway_config(mock: SocketAddr) -> String {
    format!(
        r#"# Written by octo-loadtest.
listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
  tokens: ["{ADMIN_TOKEN}"]
backends:
  mock:
    base_url: "http://{mock}"
    protocol: [openai_chat, openai_responses, anthropic, gemini]
    api_key: "sk-bench"
    timeouts: {{connect: 5s, first_byte: 60s, idle: 120s, total: 900s}}
  mock-openai:
    base_url: "http://{mock}"
    protocol: openai_chat
    api_key: "sk-bench"
    timeouts: {{connect: 5s, first_byte: 60s, idle: 120s, total: 900s}}
  mock-h2c:
    base_url: "http://{mock}"
    protocol: [openai_chat, openai_responses, anthropic, gemini]
    api_key: "sk-bench"
    http_version: h2c
    timeouts: {{connect: 5s, first_byte: 60s, idle: 120s, total: 900s}}
models:
  {PASSTHROUGH_MODEL}:
    targets:
      - {{backend: mock}}
  {CONVERT_MODEL}:
    targets:
      - {{backend: mock-openai}}
  {H2C_MODEL}:
    targets:
      - {{backend: mock-h2c}}
"#
    )
}

/// [`gateway_config`] with the operations half on: the request log in SQLite beside the config
/// file, traces exported to `otlp` (every trace: `sample` defaults to 1).
///
/// `OCTOLLM_BENCH_OPS=storage` or `=traces` turns on only that part, to split the cost.
/// `OCTOLLM_BENCH_OPS=limits` measures rate limits instead: the "on" gateway has the request log
/// and traces off like the other, and a Redis-backed rate limit (`rpm` and `tpm`, high enough
/// never to refuse) on the passthrough model, on the Redis at `OCTOLLM_BENCH_REDIS_URL`
/// (`scripts/services.sh` starts one).
fn ops_on_config(mock: SocketAddr, otlp: &str) -> String {
    let storage = format!("storage:\n  url: \"sqlite://{OPS_DB}\"\n");
    let traces = format!("telemetry:\n  otlp_endpoint: \"{otlp}\"\n");
    let parts = match std::env::var("OCTOLLM_BENCH_OPS").as_deref() {
        Ok("storage") => storage,
        Ok("traces") => format!("storage: off\n{traces}"),
        Ok("limits") => {
            let redis = std::env::var("OCTOLLM_BENCH_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
            let limited = gateway_config(mock).replace(
                &format!("  {PASSTHROUGH_MODEL}:\n    targets:\n      - {{backend: mock}}\n"),
                &format!(
                    "  {PASSTHROUGH_MODEL}:\n    targets:\n      - {{backend: mock}}\n    rate_limit: {{rpm: 100000000, tpm: 100000000000}}\n"
                ),
            );
            return format!(
                "{limited}storage: off\nredis: {{url: \"{redis}\", key_prefix: \"octollm-bench-{}:\"}}\n",
                std::process::id()
            );
        }
        _ => format!("{storage}{traces}"),
    };
    format!("{}{parts}", gateway_config(mock))
}

fn litellm_config(mock: SocketAddr) -> String {
    format!(
        r#"model_list:
  - model_name: {PASSTHROUGH_MODEL}
    litellm_params:
      model: openai/{PASSTHROUGH_MODEL}
      api_base: http://{mock}/v1
      api_key: sk-bench
litellm_settings:
  telemetry: false
general_settings:
  master_key: {LITELLM_KEY}
"#
    )
}

/// Starts the LiteLLM proxy and waits (bounded) until it answers.
fn start_litellm(
    exe: &Path,
    mock: SocketAddr,
    dir: &Path,
    cpu: Option<usize>,
    rt: &tokio::runtime::Runtime,
) -> Result<Proc, String> {
    let cfg = dir.join("litellm.yaml");
    std::fs::write(&cfg, litellm_config(mock)).map_err(|e| e.to_string())?;
    let port = procs::free_port().map_err(|e| e.to_string())?;
    let mut cmd = match cpu {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c.to_string()).arg(exe);
            cmd
        }
        None => Command::new(exe),
    };
    cmd.arg("--config")
        .arg(&cfg)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--num_workers", "1"])
        .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        .env("LITELLM_LOG", "ERROR")
        .env("NO_DOCS", "True")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().map_err(|e| format!("litellm: {e}"))?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut proc = Proc::adopt("litellm", addr, child);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if !proc.is_running() {
            return Err("litellm exited during startup".into());
        }
        let ok = rt.block_on(client::get(
            addr,
            "/health/liveliness",
            Duration::from_secs(2),
        ));
        if matches!(ok, Ok((s, _)) if s.is_success()) {
            return Ok(proc);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err("litellm did not become ready within 120 s".into())
}

/// `KEY=VALUE` arguments as pairs (others are ignored).
fn env_pairs(kvs: &[String]) -> Vec<(String, String)> {
    kvs.iter()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

fn run(args: &Args) -> Result<(), String> {
    let plan = Plan::new(args.quick, args.smoke);
    let mode = match (args.quick, args.smoke) {
        (_, true) => "smoke",
        (true, _) => "quick",
        _ => "full",
    };
    let started = Instant::now();
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let machine = machine();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = !args.no_pin && cpus >= 2 && procs::have_taskset();
    let (gen_cpu, proxy_cpu) = if pin {
        (Some(0), Some(1))
    } else {
        (None, None)
    };
    if pin && !procs::pin_self(0) {
        return Err("taskset could not pin the harness to CPU 0 (use --no-pin)".into());
    }
    let cores_note = if pin {
        "2 cores used: CPU 0 runs the load generator and the mock, CPU 1 the proxy under test (floor, gateway or LiteLLM)".to_owned()
    } else {
        format!("{cpus} core(s), not pinned: every process shares them")
    };
    let load_start = loadavg();
    println!("octo-loadtest: {mode} run; {cores_note}");
    println!("machine: {machine}");
    println!("load average at start: {load_start}; open-file limit {nofile}");

    let dir = args
        .out
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let bin_dir = args.bin_dir.as_deref();
    let mock_bin = find_bin(bin_dir, "octo-mock")?;
    let floor_bin = find_bin(bin_dir, "octo-floor")?;
    let gateway_bin = find_bin(bin_dir, "octollm-server")?;

    let timeout = Duration::from_secs(30);
    let mock = Spawn {
        name: "mock".into(),
        program: mock_bin,
        // The h2c rows put every stream of a proxy on one upstream connection.
        args: vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--h2-max-streams".into(),
            "1000000".into(),
        ],
        env: vec![],
        cpu: gen_cpu,
        banner: "octo-mock listening on ".into(),
        timeout,
    }
    .start()?;
    let floor_spawn = Spawn {
        name: "floor".into(),
        program: floor_bin,
        args: vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--upstream".into(),
            format!("http://{}", mock.addr),
        ],
        env: env_pairs(&args.floor_env),
        cpu: proxy_cpu,
        banner: "octo-floor listening on ".into(),
        timeout,
    };
    let floor = floor_spawn.start()?;
    let config_path = dir.join("gateway.yaml");
    std::fs::write(&config_path, gateway_config(mock.addr)).map_err(|e| e.to_string())?;
    let gateway_spawn = Spawn {
        name: "gateway".into(),
        program: gateway_bin,
        // The gateway rows measure the proxy path: no request log, no traces (the operations
        // half is measured by `--ops-compare`). Metrics are always on.
        args: vec![
            "--config".into(),
            config_path.display().to_string(),
            "--watch-interval".into(),
            "0".into(),
            "--storage".into(),
            "off".into(),
        ],
        env: std::iter::once(("OCTOLLM_LOG".to_owned(), "warn".to_owned()))
            .chain(env_pairs(&args.gateway_env))
            .collect(),
        cpu: proxy_cpu,
        banner: "octollm-server listening on ".into(),
        timeout,
    };
    let gateway = gateway_spawn.start()?;
    let ops = if args.ops_compare {
        Some(OpsProcs::start(&gateway_spawn, mock.addr)?)
    } else {
        None
    };
    // Fresh processes for the h2c rows of the memory measurement: the floor speaking h2c
    // upstream, the gateway (same config) sending its streams to the `http_version: h2c` backend;
    // the clients speak h2c too, then HTTP/1.1.
    let mut h2c_rows = Vec::new();
    if !args.no_h2c && !args.skip_memory {
        let h2c = Transport::H2c {
            streams_per_conn: args.h2_streams_per_conn,
        };
        for (suffix, transport) in [("h2c", h2c), ("h1-h2c", Transport::Http1)] {
            let mut gateway = gateway_spawn.clone();
            gateway.name = format!("gateway-{suffix}");
            h2c_rows.push((gateway, H2C_MODEL, transport));
            let mut floor = floor_spawn.clone();
            floor.name = format!("floor-{suffix}");
            floor.args.push("--upstream-h2c".into());
            h2c_rows.push((floor, PASSTHROUGH_MODEL, transport));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let idle_gateway = gateway.rss_kib().unwrap_or(0);
    let idle_floor = floor.rss_kib().unwrap_or(0);
    println!(
        "idle RSS: gateway {:.1} MiB, floor {:.1} MiB",
        idle_gateway as f64 / 1024.0,
        idle_floor as f64 / 1024.0
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;

    let litellm_exe = if args.no_litellm {
        None
    } else {
        args.litellm
            .clone()
            .or_else(|| Some(PathBuf::from("target/litellm-venv/bin/litellm")))
            .filter(|p| p.is_file())
    };
    let mut notes: Vec<String> = Vec::new();
    let litellm = match &litellm_exe {
        Some(exe) => {
            println!("starting LiteLLM ({})…", exe.display());
            match start_litellm(exe, mock.addr, &dir, proxy_cpu, &rt) {
                Ok(p) => Some(p),
                Err(e) => {
                    notes.push(format!("LiteLLM not measured: {e}"));
                    None
                }
            }
        }
        None if args.no_litellm => {
            notes.push("LiteLLM not measured: --no-litellm".into());
            None
        }
        None => {
            notes.push(
                "LiteLLM not measured: not installed (target/litellm-venv/bin/litellm)".into(),
            );
            None
        }
    };

    let direct = Target {
        name: "direct".into(),
        addr: mock.addr,
        pid: Some(mock.pid()),
    };
    let floor_t = Target {
        name: "floor".into(),
        addr: floor.addr,
        pid: Some(floor.pid()),
    };
    let gateway_t = Target {
        name: "gateway".into(),
        addr: gateway.addr,
        pid: Some(gateway.pid()),
    };
    let litellm_t = litellm.as_ref().map(|p| Target {
        name: "litellm".into(),
        addr: p.addr,
        pid: Some(p.pid()),
    });

    let results = rt.block_on(measure(
        &plan,
        args,
        &direct,
        &floor_t,
        &gateway_t,
        litellm_t.as_ref(),
        h2c_rows,
        nofile,
        &mut notes,
    ))?;

    let ops_result = ops
        .as_ref()
        .map(|o| rt.block_on(o.compare(&plan, &direct, &floor_t, &mut notes)));

    let idle_after = gateway.rss_kib().unwrap_or(0);
    let load_end = loadavg();
    let Results {
        latency,
        conversion,
        conversion_available,
        streaming,
        throughput,
        memory,
        overhead,
    } = results;

    // ---------------------------------------------------------------- verdicts
    let mut verdicts = Vec::new();
    let row = |rows: &[LatencyRow], size: usize, target: &str| {
        rows.iter()
            .find(|r| r.payload_bytes == size && r.target == target)
            .cloned()
    };
    if let Some(g) = row(&latency, 160, "gateway") {
        let (r50, r99) = (
            g.ratio_p50.unwrap_or(f64::NAN),
            g.ratio_p99.unwrap_or(f64::NAN),
        );
        verdicts.push(Verdict {
            target: "added latency at c=1 (160 B), p50 and p99, ≤ 1.2× the floor's".into(),
            measured: format!(
                "p50 {r50:.2}× ({:.0} vs {:.0} µs), p99 {r99:.2}× ({:.0} vs {:.0} µs)",
                g.added_p50_us.unwrap_or(0.0),
                row(&latency, 160, "floor")
                    .and_then(|f| f.added_p50_us)
                    .unwrap_or(0.0),
                g.added_p99_us.unwrap_or(0.0),
                row(&latency, 160, "floor")
                    .and_then(|f| f.added_p99_us)
                    .unwrap_or(0.0),
            ),
            met: Some(r50 <= 1.2 && r99 <= 1.2),
        });
    }
    let tp = |name: &str| throughput.iter().find(|t| t.target == name);
    if let (Some(g), Some(f)) = (tp("gateway"), tp("floor")) {
        let ratio = g.max_rps_p99_under_50ms / f.max_rps_p99_under_50ms;
        let cpu_ratio = match (f.cpu_us_per_req, g.cpu_us_per_req) {
            (Some(fc), Some(gc)) if gc > 0.0 => Some(fc / gc),
            _ => None,
        };
        verdicts.push(Verdict {
            target: "throughput on one core ≥ 85% of the floor's".into(),
            measured: format!(
                "{:.0}% ({:.0} vs {:.0} rps at p99 < 50 ms){}",
                ratio * 100.0,
                g.max_rps_p99_under_50ms,
                f.max_rps_p99_under_50ms,
                cpu_ratio
                    .map(|c| format!(
                        "; by proxy CPU per request {:.0}% ({:.1} vs {:.1} µs)",
                        c * 100.0,
                        g.cpu_us_per_req.unwrap_or(0.0),
                        f.cpu_us_per_req.unwrap_or(0.0)
                    ))
                    .unwrap_or_default()
            ),
            met: Some(ratio >= 0.85),
        });
    }
    match conversion.iter().find(|r| r.target == "gateway (convert)") {
        Some(c) => {
            let (r50, r99) = (
                c.ratio_p50.unwrap_or(f64::NAN),
                c.ratio_p99.unwrap_or(f64::NAN),
            );
            verdicts.push(Verdict {
                target: "added latency with conversion ≤ 1.5× the floor's".into(),
                measured: format!("p50 {r50:.2}×, p99 {r99:.2}×"),
                met: Some(r50 <= 1.5 && r99 <= 1.5),
            });
        }
        None if !args.memory_only => verdicts.push(Verdict {
            target: "added latency with conversion ≤ 1.5× the floor's".into(),
            measured: "conversion: not available in this build".into(),
            met: None,
        }),
        None => {}
    }
    if let (Some(big), Some(small)) = (
        row(&latency, 1 << 20, "gateway"),
        row(&latency, 1024, "gateway"),
    ) {
        let r = big.added_p50_us.unwrap_or(0.0) / small.added_p50_us.unwrap_or(f64::NAN);
        let floor_ratio = match (
            row(&latency, 1 << 20, "floor"),
            row(&latency, 1024, "floor"),
        ) {
            (Some(b), Some(s)) => {
                b.added_p50_us.unwrap_or(0.0) / s.added_p50_us.unwrap_or(f64::NAN)
            }
            _ => f64::NAN,
        };
        verdicts.push(Verdict {
            target: "1 MiB passthrough body: added latency ≤ 1.5× a 1 KiB body's".into(),
            measured: format!(
                "{r:.1}× (p50 {:.0} vs {:.0} µs; the floor's own ratio: {floor_ratio:.1}×)",
                big.added_p50_us.unwrap_or(0.0),
                small.added_p50_us.unwrap_or(0.0)
            ),
            met: Some(r <= 1.5),
        });
    }
    for (name, m) in memory.iter().filter(|m| m.0.starts_with("gateway")) {
        let over = sides(m);
        let m = (name, m);
        let mb = m.1.rss_open_kib as f64 / 1024.0;
        let projected = (m.1.rss_before_kib as f64 * 1024.0 + m.1.bytes_per_stream * 10_000.0)
            / (1024.0 * 1024.0);
        let exact = m.1.open >= 10_000;
        verdicts.push(Verdict {
            target: format!("10,000 concurrent streams in ≤ 150 MiB RSS ({over})"),
            measured: if exact {
                format!("{mb:.1} MiB with {} streams open", m.1.open)
            } else {
                format!(
                    "{mb:.1} MiB with {} streams open ({:.1} KiB per stream); projected to 10,000: {projected:.1} MiB",
                    m.1.open,
                    m.1.bytes_per_stream / 1024.0
                )
            },
            met: Some(if exact { mb <= 150.0 } else { projected <= 150.0 }),
        });
    }
    verdicts.push(Verdict {
        target: "idle RSS ≤ 20 MiB".into(),
        measured: format!(
            "{:.1} MiB at start, {:.1} MiB after the run",
            idle_gateway as f64 / 1024.0,
            idle_after as f64 / 1024.0
        ),
        met: Some(idle_gateway as f64 / 1024.0 <= 20.0),
    });

    if let Some(o) = &ops_result {
        verdicts.push(o.verdict());
    }

    // ---------------------------------------------------------------- report
    let report = render(
        &latency,
        &conversion,
        conversion_available,
        &streaming,
        &throughput,
        &memory,
        (idle_gateway, idle_floor, idle_after),
        overhead.as_ref(),
        &verdicts,
    );
    println!("{report}");
    if let Some(o) = &ops_result {
        println!("{}", o.render());
    }
    for n in &notes {
        println!("note: {n}");
    }
    println!(
        "load average at end: {load_end} (start: {load_start}); {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let out = json!({
        "mode": mode,
        "machine": machine,
        "cores": cores_note,
        "pinned": pin,
        "open_file_limit": nofile,
        "load_average": {"start": load_start, "end": load_end},
        "idle_rss_kib": {"gateway": idle_gateway, "floor": idle_floor, "gateway_after_run": idle_after},
        "latency": latency,
        "conversion": {"available": conversion_available, "rows": conversion},
        "streaming": streaming,
        "throughput": throughput,
        "memory": memory.iter().map(|(n, m)| json!({"target": n, "result": m})).collect::<Vec<_>>(),
        "gateway_overhead": overhead,
        "ops_compare": ops_result,
        "targets": verdicts,
        "notes": notes,
        "seconds": started.elapsed().as_secs_f64(),
    });
    std::fs::write(
        &args.out,
        serde_json::to_vec_pretty(&out).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    drop(litellm);
    drop(ops);
    drop(gateway);
    drop(floor);
    drop(mock);
    Ok(())
}

struct Results {
    latency: Vec<LatencyRow>,
    conversion: Vec<LatencyRow>,
    conversion_available: bool,
    streaming: Vec<StreamRow>,
    throughput: Vec<ThroughputRow>,
    memory: Vec<(String, ManyStreams)>,
    overhead: Option<Value>,
}

fn latency_rows(
    size: usize,
    targets: &[Target],
    results: &[scenario::ClosedResult],
) -> Vec<LatencyRow> {
    let summaries: Vec<Summary> = results.iter().map(|r| r.samples.summary()).collect();
    let direct = summaries.first().copied();
    let floor_idx = targets.iter().position(|t| t.name == "floor");
    let added = |s: &Summary| direct.map(|d| (s.p50_us - d.p50_us, s.p99_us - d.p99_us));
    let floor_added = floor_idx.and_then(|i| added(&summaries[i]));
    targets
        .iter()
        .zip(results)
        .zip(&summaries)
        .enumerate()
        .map(|(i, ((t, r), s))| {
            let add = (i > 0).then(|| added(s)).flatten();
            let ratio = match (add, floor_added) {
                (Some(a), Some(f)) if i > 0 && Some(i) != floor_idx => Some((a.0 / f.0, a.1 / f.1)),
                _ => None,
            };
            LatencyRow {
                payload_bytes: size,
                target: t.name.clone(),
                latency: *s,
                errors: r.errors,
                added_p50_us: add.map(|a| a.0),
                added_p99_us: add.map(|a| a.1),
                ratio_p50: ratio.map(|r| r.0),
                ratio_p99: ratio.map(|r| r.1),
            }
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    plan: &Plan,
    args: &Args,
    direct: &Target,
    floor: &Target,
    gateway: &Target,
    litellm: Option<&Target>,
    h2c_rows: Vec<(Spawn, &str, Transport)>,
    nofile: u64,
    notes: &mut Vec<String>,
) -> Result<Results, String> {
    let probe_timeout = Duration::from_secs(10);
    // The gateway must pass a plain request through before anything is measured.
    let small = payload::chat(160, PASSTHROUGH_MODEL, false, "");
    {
        let mut c = client::Conn::connect(gateway.addr)
            .await
            .map_err(|e| format!("gateway: {e}"))?;
        let (s, body) = tokio::time::timeout(
            probe_timeout,
            c.send(&RequestSpec::post(CHAT_PATH, small.clone())),
        )
        .await
        .map_err(|_| "gateway probe timed out".to_owned())?
        .map_err(|e| format!("gateway probe: {e}"))?;
        if !s.is_success() {
            return Err(format!(
                "gateway answered {s} to a passthrough request: {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    // Conversion is detected by trying it.
    let conv_body = payload::anthropic(160, CONVERT_MODEL, false, "");
    let conversion_available = match client::Conn::connect(gateway.addr).await {
        Ok(mut c) => matches!(
            tokio::time::timeout(probe_timeout, c.send(&RequestSpec::post(MESSAGES_PATH, conv_body.clone()).header("anthropic-version", "2023-06-01"))).await,
            Ok(Ok((s, body))) if s.is_success() && String::from_utf8_lossy(&body).contains("\"type\":\"message\"")
        ),
        Err(_) => false,
    };
    if !conversion_available {
        println!("conversion: not available in this build");
    }

    // ------------------------------------------------------------ closed loop, c = 1
    let mut latency = Vec::new();
    let latency_iters: &[(usize, usize)] = if args.memory_only {
        &[]
    } else {
        &plan.latency_iters
    };
    for &(size, iters) in latency_iters {
        let mut targets = vec![direct.clone(), floor.clone(), gateway.clone()];
        if size == 160 {
            if let Some(l) = litellm {
                targets.push(l.clone());
            }
        }
        let body = payload::chat(size, PASSTHROUGH_MODEL, false, "");
        println!("closed loop, c=1, {} B × {iters} per target…", body.len());
        let spec = move |t: &Target| auth_for(t, RequestSpec::post(CHAT_PATH, body.clone()));
        let per_size_limit = Duration::from_secs(if args.quick || args.smoke { 20 } else { 120 });
        let results = scenario::closed_loop(
            &targets,
            &spec,
            iters,
            plan.warmup.min(iters / 5 + 1),
            plan.batch,
            per_size_limit,
        )
        .await;
        latency.extend(latency_rows(size, &targets, &results));
    }

    // ------------------------------------------------------------ conversion
    let mut conversion = Vec::new();
    if conversion_available && !args.memory_only {
        let iters = plan.latency_iters[0].1;
        let targets = vec![
            direct.clone(),
            floor.clone(),
            Target {
                name: "gateway (convert)".into(),
                ..gateway.clone()
            },
            Target {
                name: "gateway (anthropic passthrough)".into(),
                ..gateway.clone()
            },
        ];
        println!("closed loop, c=1, conversion (Anthropic client → OpenAI-chat upstream)…");
        let spec = |t: &Target| {
            let model = if t.name == "gateway (convert)" {
                CONVERT_MODEL
            } else {
                PASSTHROUGH_MODEL
            };
            RequestSpec::post(MESSAGES_PATH, payload::anthropic(160, model, false, ""))
                .header("anthropic-version", "2023-06-01")
        };
        let results = scenario::closed_loop(
            &targets,
            &spec,
            iters,
            plan.warmup,
            plan.batch,
            Duration::from_secs(120),
        )
        .await;
        conversion = latency_rows(160, &targets, &results);
    }

    // ------------------------------------------------------------ streaming
    let interval = Duration::from_millis(20);
    let directives = "[mock:events=64][mock:interval_ms=20]";
    let stream_body = payload::chat(160, PASSTHROUGH_MODEL, true, directives);
    let stream_timeout = Duration::from_secs(20);
    let mut stream_targets = vec![direct.clone(), floor.clone(), gateway.clone()];
    let mut streaming: Vec<StreamRow> = Vec::new();
    if conversion_available {
        stream_targets.push(Target {
            name: "gateway (convert)".into(),
            ..gateway.clone()
        });
    }
    if args.memory_only {
        stream_targets.clear();
    }
    for t in &stream_targets {
        println!(
            "streaming through {}: {} × {} streams of 64 events 20 ms apart…",
            t.name, plan.stream_rounds, plan.stream_concurrency
        );
        let spec = if t.name == "gateway (convert)" {
            RequestSpec::post(
                MESSAGES_PATH,
                payload::anthropic(160, CONVERT_MODEL, true, directives),
            )
            .header("anthropic-version", "2023-06-01")
        } else {
            RequestSpec::post(CHAT_PATH, stream_body.clone())
        };
        let r = scenario::streams(
            t,
            &spec,
            plan.stream_concurrency,
            plan.stream_rounds,
            interval,
            stream_timeout,
        )
        .await;
        let fb = r.first_byte.summary();
        let gap = r.gaps.summary();
        let base = streaming.first().map(|d| (d.first_byte, d.gap));
        let added = |a: f64, b: f64| (t.name != "direct").then_some(a - b);
        streaming.push(StreamRow {
            target: t.name.clone(),
            first_byte: fb,
            gap,
            added_first_byte_p50_us: base.and_then(|b| added(fb.p50_us, b.0.p50_us)),
            added_first_byte_p99_us: base.and_then(|b| added(fb.p99_us, b.0.p99_us)),
            added_gap_p50_us: base.and_then(|b| added(gap.p50_us, b.1.p50_us)),
            added_gap_p99_us: base.and_then(|b| added(gap.p99_us, b.1.p99_us)),
            min_events: r.min_events,
            stalls: r.stalls,
            errors: r.errors,
        });
    }

    // ------------------------------------------------------------ open loop
    let mut throughput = Vec::new();
    if !args.skip_throughput && !args.memory_only {
        let mut tp_targets = vec![
            (direct.clone(), RequestSpec::post(CHAT_PATH, small.clone())),
            (floor.clone(), RequestSpec::post(CHAT_PATH, small.clone())),
            (gateway.clone(), RequestSpec::post(CHAT_PATH, small.clone())),
        ];
        if conversion_available {
            tp_targets.push((
                Target {
                    name: "gateway (convert)".into(),
                    ..gateway.clone()
                },
                RequestSpec::post(MESSAGES_PATH, conv_body.clone())
                    .header("anthropic-version", "2023-06-01"),
            ));
        }
        if let Some(l) = litellm {
            tp_targets.push((
                l.clone(),
                auth_for(l, RequestSpec::post(CHAT_PATH, small.clone())),
            ));
        }
        for (t, spec) in &tp_targets {
            throughput.push(sweep(t, spec, plan, notes).await);
        }
    }

    // ------------------------------------------------------------ memory with many open streams
    let mut memory = Vec::new();
    if !args.skip_memory {
        let wanted = args.streams.unwrap_or(plan.streams);
        // A proxy holds two sockets per stream (client side and upstream side).
        let cap = usize::try_from(nofile.saturating_sub(256) / 2).unwrap_or(usize::MAX);
        let n = wanted.min(cap);
        if n < wanted {
            notes.push(format!(
                "many open HTTP/1.1 streams: {n} instead of {wanted}: the open-file hard limit is {nofile} and a proxy needs two sockets per stream; RSS for {wanted} is projected linearly from the per-stream cost"
            ));
        }
        let spec = |model: &str| {
            RequestSpec::post(
                CHAT_PATH,
                payload::chat(160, model, true, "[mock:events=100][mock:interval_ms=3000]"),
            )
        };
        let limit = Duration::from_secs(if args.quick || args.smoke { 30 } else { 150 });
        for t in [gateway, floor] {
            println!(
                "opening {n} concurrent HTTP/1.1 streams through {}…",
                t.name
            );
            let Some(pid) = t.pid else { continue };
            let m = scenario::many_streams(
                t,
                &spec(PASSTHROUGH_MODEL),
                n,
                128,
                Transport::Http1,
                pid,
                limit,
            )
            .await;
            print_many(&m);
            memory.push((t.name.clone(), m));
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        // h2c upstream, in fresh processes: the proxy multiplexes every stream over one
        // connection to the mock; the load generator multiplexes its streams over connections
        // to the proxy (h2c rows) or opens one HTTP/1.1 connection per stream (h1-h2c rows).
        for (spawn, model, transport) in h2c_rows {
            let count = if transport == Transport::Http1 {
                // One socket per stream in the proxy.
                wanted.min(usize::try_from(nofile.saturating_sub(256)).unwrap_or(usize::MAX))
            } else {
                wanted
            };
            let proc = match spawn.start() {
                Ok(p) => p,
                Err(e) => {
                    notes.push(format!("{} not measured: {e}", spawn.name));
                    continue;
                }
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
            let t = Target {
                name: spawn.name.clone(),
                addr: proc.addr,
                pid: Some(proc.pid()),
            };
            println!(
                "opening {count} concurrent {} streams through {} (h2c upstream)…",
                match transport {
                    Transport::Http1 => "HTTP/1.1".to_owned(),
                    Transport::H2c { streams_per_conn } =>
                        format!("h2c ({streams_per_conn} per connection)"),
                },
                t.name,
            );
            let mut m =
                scenario::many_streams(&t, &spec(model), count, 128, transport, proc.pid(), limit)
                    .await;
            m.upstream_h2c = true;
            print_many(&m);
            memory.push((t.name.clone(), m));
            drop(proc);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    // ------------------------------------------------------------ the gateway's own overhead
    let overhead = match client::get(gateway.addr, "/debug/overhead", probe_timeout).await {
        Ok((s, body)) if s.is_success() => serde_json::from_slice(&body).ok(),
        _ => None,
    };
    Ok(Results {
        latency,
        conversion,
        conversion_available,
        streaming,
        throughput,
        memory,
        overhead,
    })
}

/// The open-loop sweep for one target: rising rates until p99 reaches 50 ms or a request fails,
/// then bisection; the best rate that met the bar.
async fn sweep(
    t: &Target,
    spec: &RequestSpec,
    plan: &Plan,
    notes: &mut Vec<String>,
) -> ThroughputRow {
    let estimate = scenario::saturate(t, spec, plan.conns, plan.estimate).await;
    println!(
        "open loop through {}: closed-loop estimate {estimate:.0} rps…",
        t.name
    );
    let mut steps = Vec::new();
    let run_step = |rate: f64| async move {
        let step = scenario::open_loop(t, spec, rate, plan.step, plan.conns, P99_LIMIT).await;
        println!(
            "  {:>8.0} rps offered → {:>8.0} achieved, p50 {:>8.0} µs, p99 {:>8.0} µs, errors {}, proxy CPU {}",
            step.offered_rps,
            step.achieved_rps,
            step.latency.p50_us,
            step.latency.p99_us,
            step.errors,
            step.cpu_cores
                .map_or("-".into(), |c| format!("{:.0}%", c * 100.0)),
        );
        // Let the sockets settle between steps.
        tokio::time::sleep(Duration::from_millis(200)).await;
        step
    };
    // Rise until a rate fails, then bisect between the last good and the failed rate.
    let mut factor = 0.5;
    let mut good = 0.0f64;
    let mut failed: Option<f64> = None;
    for i in 0..plan.max_steps {
        let rate = (estimate * factor).max(10.0);
        let step = run_step(rate).await;
        let ok = step.ok;
        steps.push(step);
        if !ok {
            failed = Some(rate);
            break;
        }
        good = rate;
        factor = match i {
            0 => 0.7,
            1 => 0.85,
            _ => factor * 1.1,
        };
    }
    if let Some(mut bad) = failed {
        for _ in 0..plan.bisect {
            let rate = (good + bad) / 2.0;
            let step = run_step(rate).await;
            if step.ok {
                good = rate;
            } else {
                bad = rate;
            }
            steps.push(step);
        }
    }
    let best = steps
        .iter()
        .filter(|s| s.ok)
        .max_by(|a, b| a.achieved_rps.total_cmp(&b.achieved_rps));
    if failed.is_none() {
        notes.push(format!(
            "{}: every rate tried met p99 < 50 ms; the maximum is at least the figure shown",
            t.name
        ));
    }
    ThroughputRow {
        target: t.name.clone(),
        closed_loop_estimate_rps: estimate,
        max_rps_p99_under_50ms: best.map_or(0.0, |s| s.achieved_rps),
        cpu_us_per_req: best.and_then(|s| s.cpu_us_per_req),
        proxy_cores_at_max: best.and_then(|s| s.cpu_cores),
        steps,
    }
}

/// What the client and the upstream side of a many-streams row spoke.
fn sides(m: &ManyStreams) -> &'static str {
    match (m.transport, m.upstream_h2c) {
        (Transport::Http1, false) => "HTTP/1.1 on both sides",
        (Transport::Http1, true) => "HTTP/1.1 clients, h2c upstream",
        (Transport::H2c { .. }, true) => "h2c on both sides",
        (Transport::H2c { .. }, false) => "h2c clients, HTTP/1.1 upstream",
    }
}

fn print_many(m: &ManyStreams) {
    println!(
        "  {} open ({} failed) in {:.1} s, {} file descriptors: RSS {:.1} → {:.1} MiB ({:.1} KiB per stream), {:.1} MiB 1 s after closing, {:.1} MiB after load ({}in {:.1} s, {} fds)",
        m.open,
        m.failed,
        m.open_secs,
        m.fds_open,
        m.rss_before_kib as f64 / 1024.0,
        m.rss_open_kib as f64 / 1024.0,
        m.bytes_per_stream / 1024.0,
        m.rss_after_kib as f64 / 1024.0,
        m.rss_settled_kib as f64 / 1024.0,
        if m.settled {
            "settled "
        } else {
            "not settled "
        },
        m.settle_secs,
        m.fds_settled,
    );
}

fn fmt_opt(v: Option<f64>, suffix: &str) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.0}{suffix}"))
}

fn fmt_ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}×"))
}

fn size_label(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b if b >= 1024 => format!("{} KiB", b / 1024),
        b => format!("{b} B"),
    }
}

fn latency_table(out: &mut String, rows: &[LatencyRow]) {
    let _ = writeln!(
        out,
        "| payload | target | p50 µs | p99 µs | added p50 | added p99 | × floor p50 | × floor p99 | errors |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            size_label(r.payload_bytes),
            r.target,
            r.latency.p50_us,
            r.latency.p99_us,
            fmt_opt(r.added_p50_us, ""),
            fmt_opt(r.added_p99_us, ""),
            fmt_ratio(r.ratio_p50),
            fmt_ratio(r.ratio_p99),
            r.errors
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn render(
    latency: &[LatencyRow],
    conversion: &[LatencyRow],
    conversion_available: bool,
    streaming: &[StreamRow],
    throughput: &[ThroughputRow],
    memory: &[(String, ManyStreams)],
    idle: (u64, u64, u64),
    overhead: Option<&Value>,
    verdicts: &[Verdict],
) -> String {
    let mut out = String::new();
    // A `--memory-only` run has no latency rows: it prints the memory tables only.
    if !latency.is_empty() {
        let _ = writeln!(
            out,
            "\n### Closed loop, one request at a time (latency in µs; added = via − direct)\n"
        );
        latency_table(&mut out, latency);
        let _ = writeln!(
            out,
            "\n### Conversion (Anthropic client → OpenAI-chat upstream), 160 B, c=1\n"
        );
        if conversion_available {
            latency_table(&mut out, conversion);
        } else {
            let _ = writeln!(out, "conversion: not available in this build");
        }
    }
    if !streaming.is_empty() {
        streaming_table(&mut out, streaming);
    }
    throughput_and_memory(&mut out, throughput, memory, idle, overhead, verdicts);
    out
}

fn streaming_table(out: &mut String, streaming: &[StreamRow]) {
    let _ = writeln!(out, "\n### Streaming: 64 events 20 ms apart (µs)\n");
    let _ = writeln!(
        out,
        "| target | TTFB p50 | TTFB p99 | added TTFB p50 | added TTFB p99 | gap p50 | gap p99 | added gap p50 | added gap p99 | events | stalls | errors |"
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in streaming {
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.0} | {} | {} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            s.target,
            s.first_byte.p50_us,
            s.first_byte.p99_us,
            fmt_opt(s.added_first_byte_p50_us, ""),
            fmt_opt(s.added_first_byte_p99_us, ""),
            s.gap.p50_us,
            s.gap.p99_us,
            fmt_opt(s.added_gap_p50_us, ""),
            fmt_opt(s.added_gap_p99_us, ""),
            s.min_events,
            s.stalls,
            s.errors
        );
    }
}

/// The open-loop table: each target's highest rate with p99 < 50 ms.
fn throughput_table(out: &mut String, throughput: &[ThroughputRow]) {
    let _ = writeln!(
        out,
        "| target | max rps | p50 µs there | p99 µs there | process CPU µs/request | process cores busy | rps per core (10⁶ / CPU µs) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
    for t in throughput {
        let best = t
            .steps
            .iter()
            .filter(|s| s.ok)
            .max_by(|a, b| a.achieved_rps.total_cmp(&b.achieved_rps));
        let _ = writeln!(
            out,
            "| {} | {:.0} | {} | {} | {} | {} | {} |",
            t.target,
            t.max_rps_p99_under_50ms,
            fmt_opt(best.map(|b| b.latency.p50_us), ""),
            fmt_opt(best.map(|b| b.latency.p99_us), ""),
            t.cpu_us_per_req.map_or("-".into(), |v| format!("{v:.1}")),
            t.proxy_cores_at_max
                .map_or("-".into(), |v| format!("{v:.2}")),
            t.cpu_us_per_req
                .filter(|v| *v > 0.0)
                .map_or("-".into(), |v| format!("{:.0}", 1e6 / v)),
        );
    }
}

fn throughput_and_memory(
    out: &mut String,
    throughput: &[ThroughputRow],
    memory: &[(String, ManyStreams)],
    idle: (u64, u64, u64),
    overhead: Option<&Value>,
    verdicts: &[Verdict],
) {
    if !throughput.is_empty() {
        let _ = writeln!(
            out,
            "\n### Open loop, 160 B: highest rate with p99 < 50 ms\n"
        );
        throughput_table(out, throughput);
    }
    let _ = writeln!(out, "\n### Memory (RSS)\n");
    let _ = writeln!(
        out,
        "| process | client → proxy → upstream | idle | streams open | proxy's fds | RSS with streams open | per stream | after closing |"
    );
    let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
    for (name, m) in memory {
        let _ = writeln!(
            out,
            "| {name} | {} | {:.1} MiB | {} | {} | {:.1} MiB | {:.1} KiB | {:.1} MiB |",
            sides(m),
            m.rss_before_kib as f64 / 1024.0,
            m.open,
            m.fds_open,
            m.rss_open_kib as f64 / 1024.0,
            m.bytes_per_stream / 1024.0,
            m.rss_after_kib as f64 / 1024.0
        );
    }
    if !memory.is_empty() {
        after_load_table(out, memory);
    }
    let _ = writeln!(
        out,
        "\nidle RSS at start: gateway {:.1} MiB, floor {:.1} MiB; gateway after the run: {:.1} MiB",
        idle.0 as f64 / 1024.0,
        idle.1 as f64 / 1024.0,
        idle.2 as f64 / 1024.0
    );
    if let Some(o) = overhead {
        let _ = writeln!(
            out,
            "\n### The gateway's own overhead (GET /debug/overhead: total − upstream wait, per request)\n\ncount {}, p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            o["count"], o["p50_us"], o["p90_us"], o["p99_us"], o["p999_us"], o["max_us"]
        );
    }
    let _ = writeln!(out, "\n### Targets\n");
    let _ = writeln!(out, "| target | measured | met |");
    let _ = writeln!(out, "|---|---|---|");
    for v in verdicts {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            v.target,
            v.measured,
            match v.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "n/a",
            }
        );
    }
}

/// The "RSS after load" table: each process's RSS once every stream of its many-streams row has
/// closed and the figure has settled (`scenario::settle`), against its RSS before the row.
fn after_load_table(out: &mut String, memory: &[(String, ManyStreams)]) {
    let _ = writeln!(
        out,
        "\n### RSS after load (every stream closed, RSS settled)\n\n\
         | process | client → proxy → upstream | before the load | peak with streams open | 1 s after closing | after load | settled in | of the load's growth kept | proxy's fds after |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (name, m) in memory {
        let grown = m.rss_open_kib.saturating_sub(m.rss_before_kib).max(1) as f64;
        let kept = m.rss_settled_kib.saturating_sub(m.rss_before_kib) as f64 / grown;
        let _ = writeln!(
            out,
            "| {name} | {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | **{:.1} MiB** | {:.1} s{} | {:.0}% | {} |",
            sides(m),
            m.rss_before_kib as f64 / 1024.0,
            m.rss_open_kib as f64 / 1024.0,
            m.rss_after_kib as f64 / 1024.0,
            m.rss_settled_kib as f64 / 1024.0,
            m.settle_secs,
            if m.settled { "" } else { " (not settled)" },
            kept * 100.0,
            m.fds_settled,
        );
    }
}

/// The two gateways of `--ops-compare`, both fresh processes pinned like the gateway row, and the
/// OTLP sink the operations-on one exports to. The temp dir (its config and SQLite log) is removed
/// on drop.
struct OpsProcs {
    off: Proc,
    on: Proc,
    sink: OtlpSink,
    dir: PathBuf,
}

impl OpsProcs {
    fn start(gateway: &Spawn, mock: SocketAddr) -> Result<OpsProcs, String> {
        let sink = OtlpSink::start().map_err(|e| format!("OTLP sink: {e}"))?;
        let dir = std::env::temp_dir().join(format!("octo-loadtest-ops-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = dir.join("gateway-ops-on.yaml");
        std::fs::write(&config, ops_on_config(mock, &sink.endpoint()))
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let mut off = gateway.clone();
        off.name = "gateway (ops off)".into();
        let mut on = gateway.clone();
        on.name = "gateway (ops on)".into();
        on.args = vec![
            "--config".into(),
            config.display().to_string(),
            "--watch-interval".into(),
            "0".into(),
        ];
        Ok(OpsProcs {
            off: off.start()?,
            on: on.start()?,
            sink,
            dir,
        })
    }

    fn target(p: &Proc) -> Target {
        Target {
            name: p.name.clone(),
            addr: p.addr,
            pid: Some(p.pid()),
        }
    }

    /// Closed loop at 160 B with direct, floor, off and on interleaved in batches; then the
    /// open-loop sweep through off, then on.
    async fn compare(
        &self,
        plan: &Plan,
        direct: &Target,
        floor: &Target,
        notes: &mut Vec<String>,
    ) -> OpsCompare {
        let (off, on) = (Self::target(&self.off), Self::target(&self.on));
        let body = payload::chat(160, PASSTHROUGH_MODEL, false, "");
        let iters = plan.latency_iters[0].1;
        let targets = vec![direct.clone(), floor.clone(), off.clone(), on.clone()];
        println!("operations on vs off: closed loop, c=1, 160 B × {iters} per target…");
        let spec = |_: &Target| RequestSpec::post(CHAT_PATH, body.clone());
        let results = scenario::closed_loop(
            &targets,
            &spec,
            iters,
            plan.warmup,
            plan.batch,
            Duration::from_secs(180),
        )
        .await;
        let latency = latency_rows(160, &targets, &results);
        let mut throughput = Vec::new();
        for t in [&off, &on] {
            throughput.push(sweep(t, &spec(t), plan, notes).await);
        }
        // Give the exporter's batch (and the log writer's) time to leave before reading counts.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let db_bytes: u64 = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(OPS_DB))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        let otlp_requests = self.sink.requests();
        let limits_only = std::env::var("OCTOLLM_BENCH_OPS").as_deref() == Ok("limits");
        if limits_only {
            notes.push("OCTOLLM_BENCH_OPS=limits: \"ops on\" is a Redis-backed rate limit (rpm and tpm) on the passthrough model; request log and traces are off in both".into());
        } else if otlp_requests == 0 {
            notes.push("ops on: the OTLP sink received no export: traces were not exported".into());
        }
        if db_bytes == 0 && !limits_only {
            notes.push("ops on: no SQLite request log was written".into());
        }
        let row = |name: &str| latency.iter().find(|r| r.target == name);
        let tp = |name: &str| throughput.iter().find(|r| r.target == name);
        let (lo, ln) = (row(&off.name), row(&on.name));
        let ratio = |f: fn(&LatencyRow) -> Option<f64>| match (lo.and_then(f), ln.and_then(f)) {
            (Some(o), Some(n)) if o > 0.0 => Some(n / o),
            _ => None,
        };
        let (to, tn) = (tp(&off.name), tp(&on.name));
        OpsCompare {
            added_p50_on_over_off: ratio(|r| r.added_p50_us),
            added_p99_on_over_off: ratio(|r| r.added_p99_us),
            rps_off_over_on: match (to, tn) {
                (Some(o), Some(n)) if n.max_rps_p99_under_50ms > 0.0 => {
                    Some(o.max_rps_p99_under_50ms / n.max_rps_p99_under_50ms)
                }
                _ => None,
            },
            cpu_on_over_off: match (
                to.and_then(|t| t.cpu_us_per_req),
                tn.and_then(|t| t.cpu_us_per_req),
            ) {
                (Some(o), Some(n)) if o > 0.0 => Some(n / o),
                _ => None,
            },
            latency,
            throughput,
            otlp_requests,
            otlp_bytes: self.sink.bytes(),
            db_bytes,
        }
    }
}

impl Drop for OpsProcs {
    fn drop(&mut self) {
        // The processes are killed by their own drops; the log goes with the temp dir.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What `--ops-compare` measured.
#[derive(Debug, Clone, Serialize)]
struct OpsCompare {
    /// Direct, floor, ops off and ops on at 160 B, c=1, interleaved.
    latency: Vec<LatencyRow>,
    /// The open-loop sweeps through ops off, then ops on.
    throughput: Vec<ThroughputRow>,
    added_p50_on_over_off: Option<f64>,
    added_p99_on_over_off: Option<f64>,
    /// The highest rate with p99 < 50 ms, off over on (above 1: on is slower).
    rps_off_over_on: Option<f64>,
    /// Gateway CPU per request at its best rate, on over off.
    cpu_on_over_off: Option<f64>,
    /// Export requests the OTLP sink received, and their bytes.
    otlp_requests: u64,
    otlp_bytes: u64,
    /// Size of the SQLite request log (database, WAL and shared memory files) after the run.
    db_bytes: u64,
}

impl OpsCompare {
    const GOAL: f64 = 1.1;

    fn verdict(&self) -> Verdict {
        let r = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}×"));
        let within = |v: Option<f64>| v.is_some_and(|v| v <= Self::GOAL);
        Verdict {
            target: "operations on (request log, metrics, traces) within 1.1× of off".into(),
            measured: format!(
                "added latency p50 {}, p99 {}; max rps off/on {} (CPU per request on/off {})",
                r(self.added_p50_on_over_off),
                r(self.added_p99_on_over_off),
                r(self.rps_off_over_on),
                r(self.cpu_on_over_off),
            ),
            met: Some(
                within(self.added_p50_on_over_off)
                    && within(self.added_p99_on_over_off)
                    && within(self.rps_off_over_on),
            ),
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n### Operations on vs off (request log, metrics, traces), 160 B\n"
        );
        latency_table(&mut out, &self.latency);
        out.push('\n');
        throughput_table(&mut out, &self.throughput);
        let r = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}×"));
        let _ = writeln!(
            out,
            "\non/off: added latency p50 {}, p99 {}; max rps off/on {}; CPU per request on/off {}. \
             OTLP sink: {} exports, {:.1} KiB; SQLite log: {:.1} MiB",
            r(self.added_p50_on_over_off),
            r(self.added_p99_on_over_off),
            r(self.rps_off_over_on),
            r(self.cpu_on_over_off),
            self.otlp_requests,
            self.otlp_bytes as f64 / 1024.0,
            self.db_bytes as f64 / (1024.0 * 1024.0),
        );
        out
    }
}
