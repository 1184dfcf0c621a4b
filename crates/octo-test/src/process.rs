//! A process's resident memory and open files, read from `/proc`, and waiting until they are back
//! at a baseline: how the fault-matrix tests check that the gateway gives back what a fault made it
//! take (Linux only; elsewhere the figures read as zero and every check passes).

use std::time::{Duration, Instant};

/// What a process holds at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Resident memory, in bytes (`VmRSS`).
    pub rss: u64,
    /// Open file descriptors (sockets included).
    pub fds: usize,
    /// Threads.
    pub threads: usize,
}

impl Usage {
    /// The figures of process `pid` now.
    pub fn of(pid: u32) -> Usage {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
        Usage {
            rss: field("VmRSS:") * 1024,
            fds,
            threads: usize::try_from(field("Threads:")).unwrap_or(usize::MAX),
        }
    }
}

/// How far above a baseline a process may stay after a fault.
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Extra resident memory allowed, in bytes.
    pub rss: u64,
    /// Extra open files allowed (idle pooled upstream connections, for one).
    pub fds: usize,
}

impl Default for Tolerance {
    /// 16 MiB and 4 files: allocator arenas keep some memory, and a backend's pool may keep an
    /// idle connection or two; a leak per request exceeds both within a row.
    fn default() -> Self {
        Tolerance {
            rss: 16 << 20,
            fds: 4,
        }
    }
}

/// Polls process `pid` until its memory and open files are within `tolerance` of `baseline`;
/// panics with the figures, naming `what`, if they are not within `deadline`.
pub async fn wait_back(
    pid: u32,
    baseline: Usage,
    tolerance: Tolerance,
    deadline: Duration,
    what: &str,
) -> Usage {
    let start = Instant::now();
    loop {
        let now = Usage::of(pid);
        let ok = now.rss <= baseline.rss + tolerance.rss && now.fds <= baseline.fds + tolerance.fds;
        if ok {
            return now;
        }
        if start.elapsed() > deadline {
            panic!(
                "{what}: the gateway did not return to its baseline within {deadline:?}: \
                 RSS {} MiB (baseline {} MiB, tolerance {} MiB), open files {} (baseline {}, \
                 tolerance {}); files: {}",
                now.rss >> 20,
                baseline.rss >> 20,
                tolerance.rss >> 20,
                now.fds,
                baseline.fds,
                tolerance.fds,
                describe_fds(pid)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The open files of `pid`, sockets with their TCP addresses and state (for failure messages).
pub fn describe_fds(pid: u32) -> String {
    let mut sockets = std::collections::HashMap::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 {
                let state = match f[3] {
                    "01" => "ESTABLISHED",
                    "06" => "TIME_WAIT",
                    "08" => "CLOSE_WAIT",
                    "0A" => "LISTEN",
                    other => other,
                };
                let port = |a: &str| {
                    a.rsplit(':')
                        .next()
                        .and_then(|p| u16::from_str_radix(p, 16).ok())
                        .unwrap_or(0)
                };
                sockets.insert(
                    f[9].to_owned(),
                    format!(":{}->:{} {state}", port(f[1]), port(f[2])),
                );
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for entry in dir.flatten() {
            let target = std::fs::read_link(entry.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            let described = target
                .strip_prefix("socket:[")
                .and_then(|i| i.strip_suffix(']'))
                .and_then(|inode| sockets.get(inode).cloned())
                .unwrap_or(target);
            out.push(described);
        }
    }
    out.sort();
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_files() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let me = Usage::of(std::process::id());
        assert!(me.rss > 0 && me.fds > 0 && me.threads > 0, "{me:?}");
    }
}
