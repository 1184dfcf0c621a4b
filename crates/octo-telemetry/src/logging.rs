//! The process's log output: text or one JSON object per line, filtered like `OCTOLLM_LOG`, written
//! to stderr by a dedicated thread so that logging (the access log above all) never blocks a
//! request on a slow terminal or pipe. When the writer falls behind by more than
//! [`BUFFERED_LINES`], lines are dropped and counted ([`LoggingGuard::dropped_lines`]).

use std::str::FromStr;

use tracing::Subscriber;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

use crate::TelemetryError;

/// Lines waiting for the writer thread before new ones are dropped.
pub const BUFFERED_LINES: usize = 64 * 1024;

/// How log lines are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (tracing-subscriber's default format).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's fields
    /// at the top level.
    Json,
}

impl FromStr for LogFormat {
    type Err = TelemetryError;

    /// `text` or `json`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(TelemetryError::config(format!(
                "unknown log format `{s}`, expected `text` or `json`"
            ))),
        }
    }
}

/// Keeps the log writer thread alive: hold it until the process exits (dropping it flushes what
/// is buffered).
#[derive(Debug)]
pub struct LoggingGuard {
    _guard: WorkerGuard,
    dropped: ErrorCounter,
}

impl LoggingGuard {
    /// Lines dropped because the writer thread fell behind.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped.dropped_lines() as u64
    }

    /// A counter of dropped lines for [`Metrics::counter_fn`](crate::metrics::Metrics::counter_fn)
    /// (`octollm_log_lines_dropped_total`).
    pub fn dropped_counter(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let c = self.dropped.clone();
        move || c.dropped_lines() as u64
    }
}

/// Installs the global subscriber: `format` lines filtered by `filter` (an `EnvFilter` directive
/// such as `info,octollm::access=off`) on stderr, through a writer thread.
///
/// ```no_run
/// use octo_telemetry::logging::{LogFormat, init_logging};
///
/// let filter = std::env::var("OCTOLLM_LOG").unwrap_or_else(|_| "info".into());
/// let _logging = init_logging(LogFormat::Json, &filter).expect("logging");
/// tracing::info!("started");
/// ```
pub fn init_logging(format: LogFormat, filter: &str) -> Result<LoggingGuard, TelemetryError> {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("octollm-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    subscriber(format, filter, writer)?
        .try_init()
        .map_err(|e| TelemetryError::logging(format!("cannot install the logger: {e}")))?;
    Ok(LoggingGuard {
        _guard: guard,
        dropped,
    })
}

/// The subscriber [`init_logging`] installs, writing to `writer` (tests and embedders that
/// install it themselves).
pub fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    writer: W,
) -> Result<Box<dyn Subscriber + Send + Sync>, TelemetryError>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter)
        .map_err(|e| TelemetryError::logging(format!("invalid log filter `{filter}`: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    Ok(match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .finish(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse::<LogFormat>().unwrap(), LogFormat::Json);
        assert_eq!("text".parse::<LogFormat>().unwrap(), LogFormat::Text);
        assert!("xml".parse::<LogFormat>().is_err());
        assert!(subscriber(LogFormat::Json, "info,[", std::io::sink).is_err());
    }
}
