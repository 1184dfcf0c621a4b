//! Golden tests of protocol conversion: every pair of the four chat protocols, streaming and not,
//! driven through `ConvertEngine` with a scripted inner engine. The fixtures and their rules are
//! described in `tests/golden/README.md`.
//!
//! `GOLDEN_BLESS=1 cargo test --test conversion_golden` fills in *missing* fixture files by
//! converting the first one present (order: anthropic, openai_chat, openai_responses, gemini);
//! review what it wrote before committing. On a failure the actual output is written under
//! `target/golden-actual/` next to a diff in the test output.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use octo_core::{
    Body, Engine, Error, EventStream, Protocol, Request, Response, ResponseBody, RouteParams,
    UpstreamBody, engine_fn,
};
use octo_engines::convert::{ConvertEngine, ConvertOptions, ReasoningMode};
use octo_test::request_with_body;
use serde_json::{Value, json};

/// The model every fixture names (Gemini carries it in the route).
const MODEL: &str = "test-model";
/// `created` written into blessed fixtures, so they do not change with the clock.
const CREATED: u64 = 1_700_000_000;
/// Seed order when blessing.
const SEEDS: [Protocol; 4] = [
    Protocol::Anthropic,
    Protocol::OpenAiChat,
    Protocol::OpenAiResponses,
    Protocol::Gemini,
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn name(f: Protocol) -> &'static str {
    f.config_name()
}

fn bless() -> bool {
    std::env::var_os("GOLDEN_BLESS").is_some_and(|v| v == "1")
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// A Chat client that does not ask for `stream_options.include_usage`.
    chat_client_without_usage: bool,
    /// The upstream answers this HTTP error status with `error.<upstream>.json`.
    error_status: Option<u16>,
    /// The backend's `conversion.reasoning`: `"drop"` sends no reasoning controls upstream.
    reasoning: Option<String>,
    /// Free text.
    description: String,
}

struct Scenario {
    name: String,
    dir: PathBuf,
    settings: Settings,
}

impl Scenario {
    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.path(file)).ok()
    }

    fn json(&self, file: &str) -> Option<Value> {
        self.read(file).map(|t| {
            serde_json::from_str(&t)
                .unwrap_or_else(|e| panic!("{}/{file} is not JSON: {e}", self.name))
        })
    }

    /// `expect/<kind>.<target>_from_<source>.<ext>`, else `expect/<kind>.<target>.<ext>` (any
    /// source), else `<kind>.<target>.<ext>`.
    fn expected(
        &self,
        kind: &str,
        target: Protocol,
        source: Protocol,
        ext: &str,
    ) -> Option<String> {
        self.read(&format!(
            "expect/{kind}.{}_from_{}.{ext}",
            name(target),
            name(source)
        ))
        .or_else(|| self.read(&format!("expect/{kind}.{}.{ext}", name(target))))
        .or_else(|| self.read(&format!("{kind}.{}.{ext}", name(target))))
    }

    /// The conversion options of the scenario's backend.
    fn options(&self) -> ConvertOptions {
        match self.settings.reasoning.as_deref() {
            None | Some("pass") => ConvertOptions::default(),
            Some("drop") => ConvertOptions::default().with_reasoning(ReasoningMode::Drop),
            Some(other) => panic!("{}: unknown reasoning setting `{other}`", self.name),
        }
    }

    /// `upstream/<kind>.<p>.<ext>`, else `<kind>.<p>.<ext>`.
    fn upstream_input(&self, kind: &str, p: Protocol, ext: &str) -> Option<String> {
        self.read(&format!("upstream/{kind}.{}.{ext}", name(p)))
            .or_else(|| self.read(&format!("{kind}.{}.{ext}", name(p))))
    }
}

fn scenarios() -> Vec<Scenario> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|dir| {
            let settings = std::fs::read_to_string(dir.join("scenario.json"))
                .map(|t| serde_json::from_str(&t).expect("scenario.json is valid"))
                .unwrap_or_default();
            Scenario {
                name: dir.file_name().unwrap().to_string_lossy().into_owned(),
                dir,
                settings,
            }
        })
        .collect()
}

// ------------------------------------------------------------------------------------------ requests

/// The client request for `client` (stream flags injected when `stream`).
fn client_request(s: &Scenario, client: Protocol, stream: bool) -> Option<Request> {
    let mut body = s.json(&format!("request.{}.json", name(client)))?;
    if stream {
        inject_stream(&mut body, client, !s.settings.chat_client_without_usage);
    }
    Some(request_with_body(client, MODEL, stream, body.to_string()))
}

fn inject_stream(body: &mut Value, format: Protocol, chat_usage: bool) {
    match format {
        Protocol::Gemini => {}
        Protocol::OpenAiChat => {
            body["stream"] = true.into();
            if chat_usage {
                body["stream_options"] = json!({"include_usage": true});
            }
        }
        _ => body["stream"] = true.into(),
    }
}

// ------------------------------------------------------------------------------------------ upstream

/// What the scripted upstream answers.
#[derive(Clone)]
enum Answer {
    Json(Value),
    Sse(String),
    Error(StatusCode, Value),
}

/// A `ConvertEngine` over a scripted upstream that records the request it got.
fn engine(
    upstream: Protocol,
    answer: Answer,
    options: ConvertOptions,
) -> (ConvertEngine, Arc<Mutex<Option<Request>>>) {
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    let inner = engine_fn(move |req: Request| {
        let answer = answer.clone();
        let record = Arc::clone(&record);
        async move {
            assert_eq!(
                req.protocol, upstream,
                "the converter addressed the upstream's protocol"
            );
            *record.lock().unwrap() = Some(req);
            match answer {
                Answer::Json(v) => Ok(Response::json(200, Body::from_json(v))),
                Answer::Sse(text) => Ok(Response::stream(EventStream::iter(octo_test::events(
                    &text,
                )))),
                Answer::Error(status, body) => Err(Error::upstream_status(
                    status,
                    format!("backend `golden` answered {}", status.as_u16()),
                    UpstreamBody {
                        protocol: Some(upstream),
                        body: Bytes::from(body.to_string()),
                    },
                    None,
                )),
            }
        }
    });
    (
        ConvertEngine::new(Arc::new(inner), upstream).with_options(options),
        seen,
    )
}

/// The client's view of a stream: frames as the front writes them, errors included.
async fn drain(client: Protocol, events: EventStream) -> String {
    let mut text = String::new();
    let mut events = events;
    while let Some(item) = events.next().await {
        let frame = match item {
            Ok(ev) => ev.to_frame(),
            Err(e) => e.render_stream_frame(client),
        };
        text.push_str(std::str::from_utf8(&frame).unwrap());
    }
    text
}

// ------------------------------------------------------------------------------------------ compare

/// Replaces values that legitimately differ between runs or upstreams (see the README).
fn normalize(v: &mut Value) {
    match v {
        Value::Object(o) => {
            let volatile_id = o.contains_key("object")
                || matches!(
                    o.get("type").and_then(Value::as_str),
                    Some("message" | "reasoning" | "function_call" | "custom_tool_call")
                );
            for (k, val) in o.iter_mut() {
                match k.as_str() {
                    "created" | "created_at" => *val = json!("<created>"),
                    "responseId" => *val = json!("<id>"),
                    "item_id" => mask_id(val),
                    "id" if volatile_id => mask_id(val),
                    _ => normalize(val),
                }
            }
            if o.get("type").and_then(Value::as_str) == Some("message_start") {
                if let Some(usage) = o.get_mut("message").and_then(|m| m.get_mut("usage")) {
                    *usage = json!("<usage at start>");
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// An id masked down to its protocol prefix (`msg_<id>`, `chatcmpl-<id>`, `resp_<id>`, `fc_<id>`):
/// the value may differ with the upstream, the convention may not.
fn mask_id(v: &mut Value) {
    let Some(id) = v.as_str() else { return };
    let prefix = id
        .find(['_', '-'])
        .map(|i| &id[..=i])
        .filter(|p| p[..p.len() - 1].bytes().all(|b| b.is_ascii_lowercase()))
        .unwrap_or("");
    *v = json!(format!("{prefix}<id>"));
}

fn json_lines(v: &Value) -> Vec<String> {
    let mut v = v.clone();
    normalize(&mut v);
    serde_json::to_string_pretty(&v)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn sse_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for ev in octo_test::events(text) {
        if let Some(n) = ev.name() {
            out.push(format!("event: {n}"));
        }
        let data = ev.data_body().to_bytes();
        match serde_json::from_slice::<Value>(&data) {
            Ok(mut v) => {
                normalize(&mut v);
                out.push(format!("data: {v}"));
            }
            Err(_) => out.push(format!("data: {}", String::from_utf8_lossy(&data))),
        }
    }
    out
}

/// A line diff (LCS), `-` expected, `+` actual, with two lines of context.
fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            ops.push((' ', &expected[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', &actual[j]));
            j += 1;
        } else {
            ops.push(('-', &expected[i]));
            i += 1;
        }
    }
    let near_change = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|(c, _)| *c != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (c, line)) in ops.iter().enumerate() {
        if near_change(k) {
            if skipped {
                out.push_str("   ...\n");
                skipped = false;
            }
            let _ = writeln!(out, "{c}  {line}");
        } else {
            skipped = true;
        }
    }
    out
}

struct Report {
    failures: Vec<String>,
    checked: usize,
}

impl Report {
    fn check(&mut self, what: &str, expected: Vec<String>, actual: Vec<String>, actual_raw: &str) {
        self.checked += 1;
        if expected != actual {
            let out = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/golden-actual")
                .join(what.replace([' ', '/'], "_").replace(['(', ')', ':'], ""));
            let _ = std::fs::create_dir_all(out.parent().unwrap());
            let _ = std::fs::write(&out, actual_raw);
            self.failures.push(format!(
                "── {what} (actual output written to {})\n{}",
                out.display(),
                diff(&expected, &actual)
            ));
        }
    }
}

// ------------------------------------------------------------------------------------------ runs

async fn run_pair(
    s: &Scenario,
    client: Protocol,
    upstream: Protocol,
    stream: bool,
    report: &mut Report,
) {
    let label = format!(
        "{} {}: {} client, {} upstream",
        s.name,
        if stream { "stream" } else { "full" },
        name(client),
        name(upstream)
    );
    let answer = if let Some(status) = s.settings.error_status {
        let Some(body) = s.json(&format!("error.{}.json", name(upstream))) else {
            return;
        };
        Answer::Error(StatusCode::from_u16(status).unwrap(), body)
    } else if stream {
        match s.upstream_input("stream", upstream, "sse") {
            Some(text) => Answer::Sse(text),
            None => return,
        }
    } else {
        match s.upstream_input("response", upstream, "json") {
            Some(text) => Answer::Json(serde_json::from_str(&text).unwrap()),
            None => return,
        }
    };
    let Some(req) = client_request(s, client, stream) else {
        return;
    };
    let (engine, seen) = engine(upstream, answer, s.options());
    let result = engine.process(req).await;

    // The converted upstream request.
    if let Some(expected) = s.expected("request", upstream, client, "json") {
        let mut expected: Value = serde_json::from_str(&expected).unwrap();
        if stream {
            inject_stream(&mut expected, upstream, true);
        }
        match seen.lock().unwrap().take() {
            Some(mut up) => {
                let actual = up.body.json().unwrap().clone();
                report.check(
                    &format!("{label}: upstream request"),
                    json_lines(&expected),
                    json_lines(&actual),
                    &serde_json::to_string_pretty(&actual).unwrap(),
                );
                if upstream == Protocol::Gemini {
                    assert_eq!(
                        up.route.model.as_deref(),
                        Some(MODEL),
                        "{label}: route model"
                    );
                    assert_eq!(up.route.stream, Some(stream), "{label}: route stream");
                } else {
                    assert_eq!(up.route, RouteParams::default(), "{label}: route cleared");
                }
            }
            None => report.failures.push(format!(
                "── {label}: the upstream was not called: {:?}",
                result.as_ref().err()
            )),
        }
    }

    // The client's answer.
    let (actual_lines, actual_raw, expected) = match result {
        Err(e) => {
            let rendered = e.render(client);
            let v: Value = serde_json::from_slice(&rendered.body).unwrap();
            let wrapped = json!({"status": rendered.status.as_u16(), "body": v});
            let expected = s
                .expected("client_error", client, upstream, "json")
                .map(|t| json_lines(&serde_json::from_str(&t).unwrap()));
            (
                json_lines(&wrapped),
                serde_json::to_string_pretty(&wrapped).unwrap(),
                expected,
            )
        }
        Ok(resp) => match resp.body {
            ResponseBody::Full(mut body) => {
                let v = body.json().unwrap().clone();
                let expected = s
                    .expected("response", client, upstream, "json")
                    .map(|t| json_lines(&serde_json::from_str(&t).unwrap()));
                (
                    json_lines(&v),
                    serde_json::to_string_pretty(&v).unwrap(),
                    expected,
                )
            }
            ResponseBody::Stream(events) => {
                let text = drain(client, events).await;
                let expected = s
                    .expected("stream", client, upstream, "sse")
                    .map(|t| sse_lines(&t));
                (sse_lines(&text), text, expected)
            }
        },
    };
    match expected {
        Some(expected) => report.check(
            &format!("{label}: client answer"),
            expected,
            actual_lines,
            &actual_raw,
        ),
        None => report.failures.push(format!(
            "── {label}: no expected client answer fixture; actual:\n{actual_raw}"
        )),
    }
}

#[tokio::test]
async fn golden_conversions_for_every_pair() {
    if bless() {
        bless_missing().await;
    }
    let mut report = Report {
        failures: Vec::new(),
        checked: 0,
    };
    let scenarios = scenarios();
    assert!(!scenarios.is_empty());
    for s in &scenarios {
        for client in Protocol::CHAT_PROTOCOLS {
            for upstream in Protocol::CHAT_PROTOCOLS {
                if client == upstream {
                    continue;
                }
                for stream in [false, true] {
                    run_pair(s, client, upstream, stream, &mut report).await;
                }
            }
        }
    }
    assert!(
        report.failures.is_empty(),
        "{} of {} golden checks failed:\n\n{}",
        report.failures.len(),
        report.checked,
        report.failures.join("\n")
    );
    eprintln!("{} golden checks passed", report.checked);
}

// ------------------------------------------------------------------------------------------ bless

/// Writes missing fixtures by converting the first present one (see the module docs).
async fn bless_missing() {
    for s in scenarios() {
        for kind in ["request", "response", "stream"] {
            if s.settings.error_status.is_some() && kind != "request" {
                continue;
            }
            let ext = if kind == "stream" { "sse" } else { "json" };
            let Some(seed) = SEEDS
                .into_iter()
                .find(|p| s.path(&format!("{kind}.{}.{ext}", name(*p))).exists())
            else {
                continue;
            };
            for target in SEEDS {
                let file = s.path(&format!("{kind}.{}.{ext}", name(target)));
                if target == seed || file.exists() {
                    continue;
                }
                let text = match kind {
                    "request" => bless_request(&s, seed, target).await,
                    _ => bless_answer(&s, seed, target, kind == "stream").await,
                };
                if let Some(text) = text {
                    std::fs::write(&file, text).unwrap();
                    eprintln!("blessed {}", file.display());
                }
            }
        }
    }
}

async fn bless_request(s: &Scenario, client: Protocol, upstream: Protocol) -> Option<String> {
    let req = client_request(s, client, false)?;
    let (engine, seen) = engine(upstream, Answer::Json(json!({})), s.options());
    let _ = engine.process(req).await;
    let mut up = seen.lock().unwrap().take()?;
    let v = up.body.json().ok()?.clone();
    Some(serde_json::to_string_pretty(&v).unwrap() + "\n")
}

async fn bless_answer(
    s: &Scenario,
    upstream: Protocol,
    client: Protocol,
    stream: bool,
) -> Option<String> {
    let kind = if stream { "stream" } else { "response" };
    let ext = if stream { "sse" } else { "json" };
    let input = s.upstream_input(kind, upstream, ext)?;
    let answer = if stream {
        Answer::Sse(input)
    } else {
        Answer::Json(serde_json::from_str(&input).unwrap())
    };
    let req = client_request(s, client, stream).unwrap_or_else(|| {
        let body = match client {
            Protocol::Gemini => json!({"contents": []}),
            Protocol::OpenAiResponses => json!({"model": MODEL, "input": "x"}),
            Protocol::Anthropic => json!({"model": MODEL, "max_tokens": 10, "messages": []}),
            _ => json!({"model": MODEL, "messages": []}),
        };
        let mut body = body;
        if stream {
            inject_stream(&mut body, client, true);
        }
        request_with_body(client, MODEL, stream, body.to_string())
    });
    let (engine, _) = engine(upstream, answer, s.options());
    let resp = engine.process(req).await.ok()?;
    Some(match resp.body {
        ResponseBody::Full(mut body) => {
            let mut v = body.json().ok()?.clone();
            pin_created(&mut v);
            serde_json::to_string_pretty(&v).unwrap() + "\n"
        }
        ResponseBody::Stream(events) => {
            let text = drain(client, events).await;
            let mut out = String::new();
            for ev in octo_test::events(&text) {
                if let Some(n) = ev.name() {
                    let _ = writeln!(out, "event: {n}");
                }
                let data = ev.data_body().to_bytes();
                let line = match serde_json::from_slice::<Value>(&data) {
                    Ok(mut v) => {
                        pin_created(&mut v);
                        v.to_string()
                    }
                    Err(_) => String::from_utf8_lossy(&data).into_owned(),
                };
                let _ = writeln!(out, "data: {line}\n");
            }
            out
        }
    })
}

fn pin_created(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, val) in o.iter_mut() {
                if (k == "created" || k == "created_at") && val.is_u64() {
                    *val = CREATED.into();
                } else {
                    pin_created(val);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(pin_created),
        _ => {}
    }
}

#[test]
fn scenario_settings_parse() {
    for s in scenarios() {
        let _ = &s.settings.description;
    }
}
