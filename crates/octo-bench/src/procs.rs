//! The processes under test: spawned (optionally pinned to a CPU with `taskset`), found by the
//! `… listening on http://ADDR` line they print, observed through `/proc`, and killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Lines a process may print before its banner (they are skipped, unread by the harness).
const MAX_LINES_BEFORE_BANNER: usize = 16;

/// A child process serving HTTP on `addr`; killed (by its own pid) when dropped.
pub struct Proc {
    /// Short name for reports.
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    _stdout: Option<BufReader<ChildStdout>>,
}

/// How to start one process.
#[derive(Debug, Clone)]
pub struct Spawn {
    /// Short name for reports.
    pub name: String,
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// The CPU to pin it to (through `taskset -c`).
    pub cpu: Option<usize>,
    /// The stdout line prefix before the URL, e.g. `octo-mock listening on `.
    pub banner: String,
    /// How long to wait for the banner.
    pub timeout: Duration,
}

impl Spawn {
    /// Starts the process and waits for its banner.
    ///
    /// # Errors
    /// When it cannot be started, exits, or prints no banner in time.
    pub fn start(&self) -> Result<Proc, String> {
        let mut cmd = match self.cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "{}: cannot start {}: {e}",
                self.name,
                self.program.display()
            )
        })?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        let banner = self.banner.clone();
        let wanted = banner.clone();
        // Read the banner on a thread so that a silent child cannot hang the harness. Lines
        // before it (the gateway prints its admin listener's address first) are skipped.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut got = Ok(String::new());
            for _ in 0..MAX_LINES_BEFORE_BANNER {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) => break,
                    Ok(_) if line.starts_with(&wanted) => {
                        got = Ok(line);
                        break;
                    }
                    Ok(_) => got = Ok(line),
                    Err(e) => {
                        got = Err(e);
                        break;
                    }
                }
            }
            let _ = tx.send((got, reader));
        });
        let (line, reader) = match rx.recv_timeout(self.timeout) {
            Ok((Ok(line), reader)) => (line, reader),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{}: no `{banner}…` line within {:?}",
                    self.name, self.timeout
                ));
            }
        };
        let url = line.trim().strip_prefix(&banner).map(str::to_owned);
        let addr = url
            .as_deref()
            .and_then(|u| u.strip_prefix("http://"))
            .and_then(|a| a.trim_end_matches('/').parse::<SocketAddr>().ok());
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{}: no `{banner}http://ADDR` line (last line read: {line:?})",
                self.name
            ));
        };
        Ok(Proc {
            name: self.name.clone(),
            addr,
            child,
            _stdout: Some(reader),
        })
    }
}

impl Proc {
    /// Wraps a child whose address is already known (a process that prints no banner).
    pub fn adopt(name: impl Into<String>, addr: SocketAddr, child: Child) -> Proc {
        Proc {
            name: name.into(),
            addr,
            child,
            _stdout: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB (`VmRSS` from `/proc/PID/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// CPU time used so far (user + system, all threads).
    pub fn cpu_time(&self) -> Option<Duration> {
        cpu_time(self.pid())
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Open file descriptors (sockets included) of `pid`, from `/proc/PID/fd`.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Total CPU time (user + system) of `pid`, from `/proc/PID/stat` (assumes 100 ticks per second,
/// Linux's `USER_HZ` on every mainstream architecture).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Pins every thread of this process to `cpu` (through `taskset -a -p`); returns whether it worked.
pub fn pin_self(cpu: usize) -> bool {
    Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `taskset` can be run.
pub fn have_taskset() -> bool {
    Command::new("taskset")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Looks for `name` next to the running executable.
pub fn sibling(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let candidates = [dir.to_path_buf(), dir.parent().map(Path::to_path_buf)?];
    candidates
        .iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A loopback port that was free a moment ago.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_rss_and_cpu() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        assert!(cpu_time(me).is_some());
        assert!(fd_count(me).unwrap() > 0);
    }
}
