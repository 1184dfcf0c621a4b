//! Stopping and starting the test services (PostgreSQL, MariaDB, Redis) that
//! `scripts/services.sh` runs, through the control command it writes for each
//! (`OCTOLLM_TEST_*_CTL`, taking `stop` / `start`): outage tests share these, and the
//! check that both variables are set (a test skips, saying why, when they are not).

use std::process::Command;

/// PostgreSQL's URL and control command (`OCTOLLM_TEST_POSTGRES_URL`, `…_CTL`); `None`, after
/// printing why the test skips, when either is unset.
pub fn postgres() -> Option<(String, String)> {
    url_and_ctl("POSTGRES", "PostgreSQL")
}

/// Redis's URL and control command (`OCTOLLM_TEST_REDIS_URL`, `…_CTL`); `None`, after printing
/// why the test skips, when either is unset.
pub fn redis() -> Option<(String, String)> {
    url_and_ctl("REDIS", "Redis")
}

fn url_and_ctl(name: &str, service: &str) -> Option<(String, String)> {
    let (url, ctl) = (
        format!("OCTOLLM_TEST_{name}_URL"),
        format!("OCTOLLM_TEST_{name}_CTL"),
    );
    match (std::env::var(&url), std::env::var(&ctl)) {
        (Ok(u), Ok(c)) => Some((u, c)),
        _ => {
            eprintln!("skipping: {url} / {ctl} are not set (scripts/services.sh starts {service})");
            None
        }
    }
}

/// Runs `command action` (`stop` or `start`); panics when it fails.
pub fn ctl(command: &str, action: &str) {
    let status = Command::new(command)
        .arg(action)
        .status()
        .unwrap_or_else(|e| panic!("run {command} {action}: {e}"));
    assert!(status.success(), "{command} {action} failed");
}

/// Starts the service again (with control command `.0`) when dropped while `.1` is true, so a
/// test that fails while it is stopped does not leave it down for the others.
pub struct Restart<'a>(pub &'a str, pub bool);

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        if self.1 {
            ctl(self.0, "start");
        }
    }
}
