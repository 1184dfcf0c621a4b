//! The Prometheus text exposition format (version 0.0.4), written by hand: families with their
//! `# HELP` and `# TYPE` lines, samples with escaped label values, and values spelled the way
//! Prometheus parses them (`+Inf`, `NaN`).
//!
//! [`Exposition`] is also what a [`Collect`](super::Collect) callback writes into at scrape time,
//! so the rules of the format (valid names, one header per family, escaping) are enforced in one
//! place: a family with an invalid name or one already written is skipped, with a warning, and
//! never produces a line Prometheus would refuse.

use std::collections::HashSet;
use std::fmt::Write as _;

/// The `Content-Type` of [`Metrics::render`](super::Metrics::render)'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The kind of a metric family, as written in its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A value that only goes up (its name should end in `_total`).
    Counter,
    /// A value that goes up and down.
    Gauge,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// A Prometheus text document being written.
///
/// ```
/// use octo_telemetry::metrics::{Exposition, MetricKind};
///
/// let mut out = Exposition::new();
/// out.family("octollm_backend_key_state", "1 for the state a key is in.", MetricKind::Gauge)
///     .sample(&[("backend", "oa"), ("key", "#1"), ("state", "closed")], 1.0);
/// let text = out.finish();
/// assert!(text.contains("# TYPE octollm_backend_key_state gauge\n"));
/// assert!(text.contains("octollm_backend_key_state{backend=\"oa\",key=\"#1\",state=\"closed\"} 1\n"));
/// ```
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    seen: HashSet<String>,
}

impl Exposition {
    /// An empty document.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a family: writes its `# HELP` and `# TYPE` lines and returns a writer for its
    /// samples. A family whose name is not a valid metric name, or that was already written, is
    /// skipped (its samples go nowhere) and a warning is logged.
    pub fn family(&mut self, name: &str, help: &str, kind: MetricKind) -> Family<'_> {
        self.start(name, help, kind.as_str())
    }

    pub(crate) fn start(&mut self, name: &str, help: &str, kind: &str) -> Family<'_> {
        let ok = valid_name(name, true) && self.seen.insert(name.to_owned());
        if ok {
            let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
            let _ = writeln!(self.out, "# TYPE {name} {kind}");
        } else {
            tracing::warn!(target: "octollm::metrics", "metric family `{name}` skipped: invalid or duplicate name");
        }
        Family {
            out: if ok { Some(&mut self.out) } else { None },
            name: name.to_owned(),
        }
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

/// The samples of one family; see [`Exposition::family`].
#[derive(Debug)]
pub struct Family<'a> {
    out: Option<&'a mut String>,
    name: String,
}

impl Family<'_> {
    /// Writes one sample of the family. A sample with an invalid label name is skipped.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.write("", labels, None, Value::Float(value))
    }

    /// Writes one sample with an integer value (exact beyond 2⁵³, unlike `f64`).
    pub fn sample_u64(&mut self, labels: &[(&str, &str)], value: u64) -> &mut Self {
        self.write("", labels, None, Value::Int(value))
    }

    /// Writes a sample named `<family><suffix>` with an extra trailing label (histograms).
    pub(crate) fn write(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        extra: Option<(&str, &str)>,
        value: Value,
    ) -> &mut Self {
        let Some(out) = self.out.as_deref_mut() else {
            return self;
        };
        if labels.iter().any(|(k, _)| !valid_name(k, false)) {
            tracing::warn!(target: "octollm::metrics", "sample of `{}` skipped: invalid label name", self.name);
            return self;
        }
        out.push_str(&self.name);
        out.push_str(suffix);
        let mut all = labels.iter().copied().chain(extra);
        if let Some(first) = all.next() {
            out.push('{');
            for (i, (k, v)) in std::iter::once(first).chain(all).enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(k);
                out.push_str("=\"");
                escape_value(out, v);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        match value {
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Float(f) => write_float(out, f),
        }
        out.push('\n');
        self
    }
}

/// A sample value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value {
    Int(u64),
    Float(f64),
}

/// Writes `f` as Prometheus parses it: `+Inf`, `-Inf`, `NaN`, else Rust's shortest round-trip form.
pub(crate) fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
    } else if f == f64::INFINITY {
        out.push_str("+Inf");
    } else if f == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{f}");
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names; no colons in label names.
fn valid_name(name: &str, metric: bool) -> bool {
    let ok = |c: u8, first: bool| {
        c.is_ascii_alphabetic()
            || c == b'_'
            || (metric && c == b':')
            || (!first && c.is_ascii_digit())
    };
    let b = name.as_bytes();
    !b.is_empty() && ok(b[0], true) && b[1..].iter().all(|&c| ok(c, false))
}

/// Label values escape `\`, `"` and newlines.
fn escape_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Help text escapes `\` and newlines.
fn escape_help(h: &str) -> String {
    h.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_values_and_skips_bad_or_repeated_families() {
        let mut out = Exposition::new();
        out.family("a_total", "line\none", MetricKind::Counter)
            .sample(&[("k", "a\"b\\c\nd")], 1.5)
            .sample(&[("bad-label", "x")], 2.0)
            .sample_u64(&[], u64::MAX);
        out.family("a_total", "again", MetricKind::Counter)
            .sample(&[], 9.0);
        out.family("0bad", "", MetricKind::Gauge).sample(&[], 1.0);
        out.family("g", "", MetricKind::Gauge)
            .sample(&[], f64::INFINITY)
            .sample(&[("x", "1")], f64::NAN);
        let text = out.finish();
        assert_eq!(
            text,
            "# HELP a_total line\\none\n# TYPE a_total counter\n\
             a_total{k=\"a\\\"b\\\\c\\nd\"} 1.5\na_total 18446744073709551615\n\
             # HELP g \n# TYPE g gauge\ng +Inf\ng{x=\"1\"} NaN\n"
        );
    }

    #[test]
    fn names() {
        assert!(valid_name("octollm_requests_total", true));
        assert!(valid_name("a:b", true));
        assert!(!valid_name("a:b", false));
        assert!(!valid_name("", true));
        assert!(!valid_name("9a", false));
        assert!(valid_name("_a9", false));
    }
}
