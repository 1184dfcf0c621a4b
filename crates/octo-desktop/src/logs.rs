//! The gateway's log lines, live.
//!
//! The app installs one tracing subscriber (octo-telemetry's, as `octollm-server` does) whose
//! writer ([`TeeWriter`]) copies every formatted line to stderr and into a [`LogHub`]: a
//! broadcast channel for the log window's live view and a bounded backlog, so a window opened
//! later starts with the recent lines. Slow readers lose lines (the broadcast lags) rather than
//! slow the gateway: publishing never blocks.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use tracing_subscriber::fmt::MakeWriter;

/// Lines kept for a log window opened later.
pub const BACKLOG: usize = 2000;

/// One log line and its number (1, 2, … in publishing order), so that a reader that took the
/// backlog and then receives live lines can drop those it already has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Its place in the stream.
    pub seq: u64,
    /// The text, without colour codes or line end.
    pub text: String,
}

/// The log line stream; see the [module docs](self).
#[derive(Debug)]
pub struct LogHub {
    tx: broadcast::Sender<Line>,
    /// The recent lines and the last number given.
    backlog: Mutex<(VecDeque<Line>, u64)>,
}

impl Default for LogHub {
    fn default() -> Self {
        LogHub {
            tx: broadcast::channel(1024).0,
            backlog: Mutex::new((VecDeque::with_capacity(BACKLOG), 0)),
        }
    }
}

impl LogHub {
    /// An empty hub.
    pub fn new() -> Arc<LogHub> {
        Arc::new(LogHub::default())
    }

    /// Publishes one line (terminal colour codes removed, trailing newline trimmed).
    pub fn publish(&self, line: &str) {
        let text = strip_ansi(line.trim_end_matches(['\n', '\r']));
        let mut b = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        b.1 += 1;
        let line = Line { seq: b.1, text };
        if b.0.len() == BACKLOG {
            b.0.pop_front();
        }
        b.0.push_back(line.clone());
        // Sent under the lock, so lines arrive in number order.
        let _ = self.tx.send(line);
    }

    /// The recent lines, oldest first, and a receiver of every line published after them.
    pub fn subscribe(&self) -> (Vec<Line>, broadcast::Receiver<Line>) {
        let b = self.backlog.lock().unwrap_or_else(|e| e.into_inner());
        // Subscribing under the backlog's lock: no line is both in the backlog and received,
        // and none is missed.
        let rx = self.tx.subscribe();
        (b.0.iter().cloned().collect(), rx)
    }

    /// Installs the process's tracing subscriber (`filter` as in `OCTOLLM_LOG`), writing to
    /// stderr and this hub. Once per process.
    ///
    /// # Errors
    /// When the filter is invalid or a subscriber is already installed.
    pub fn install(self: &Arc<Self>, filter: &str) -> Result<(), String> {
        let subscriber = octo_telemetry::logging::subscriber(
            octo_telemetry::logging::LogFormat::Text,
            filter,
            TeeWriter {
                hub: self.clone(),
                stderr: true,
            },
        )
        .map_err(|e| e.to_string())?;
        tracing::subscriber::set_global_default(subscriber).map_err(|e| e.to_string())
    }
}

/// A tracing writer that copies each formatted event to the [`LogHub`] (and to stderr).
#[derive(Debug, Clone)]
pub struct TeeWriter {
    /// Where lines go.
    pub hub: Arc<LogHub>,
    /// Also write to stderr.
    pub stderr: bool,
}

/// One event's output (tracing-subscriber formats an event, then writes it).
#[derive(Debug)]
pub struct EventWriter {
    tee: TeeWriter,
    buf: Vec<u8>,
}

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if self.tee.stderr {
            let _ = std::io::stderr().write_all(&self.buf);
        }
        for line in String::from_utf8_lossy(&self.buf).lines() {
            self.tee.hub.publish(line);
        }
    }
}

impl<'a> MakeWriter<'a> for TeeWriter {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> EventWriter {
        EventWriter {
            tee: self.clone(),
            buf: Vec::new(),
        }
    }
}

/// `s` without terminal escape sequences (`ESC [ … letter`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for d in chars.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_are_removed() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x"),
            "2026  INFO x"
        );
    }

    #[test]
    fn backlog_is_bounded_and_then_live() {
        let hub = LogHub::new();
        for i in 0..BACKLOG + 5 {
            hub.publish(&format!("line {i}\n"));
        }
        let (backlog, mut rx) = hub.subscribe();
        assert_eq!(backlog.len(), BACKLOG);
        assert_eq!(backlog[0].text, "line 5");
        assert_eq!(backlog[0].seq, 6);
        hub.publish("live");
        let live = rx.try_recv().unwrap();
        assert_eq!(live.text, "live");
        assert_eq!(live.seq, BACKLOG as u64 + 6);
    }

    #[test]
    fn a_subscriber_event_reaches_the_hub() {
        let hub = LogHub::new();
        let sub = octo_telemetry::logging::subscriber(
            octo_telemetry::logging::LogFormat::Text,
            "info",
            TeeWriter {
                hub: hub.clone(),
                stderr: false,
            },
        )
        .unwrap();
        tracing::subscriber::with_default(sub, || tracing::info!(answer = 42, "hello hub"));
        let (lines, _) = hub.subscribe();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].text.contains("hello hub") && lines[0].text.contains("answer=42"));
    }
}
