//! Stopping and starting the test services (PostgreSQL, MariaDB, Redis) that
//! `scripts/services.sh` runs, through the control command it writes for each
//! (`OCTOLLM_TEST_*_CTL`, taking `stop` / `start`): outage tests share these.

use std::process::Command;

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
