//! A fresh directory of a test's own under the system's temp dir, removed on drop: where a
//! gateway keeps its SQLite request log, so tests running at once never share a database.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty directory `octollm-<label>-<pid>-<n>` under the system's temp dir; removed
/// (with what is in it) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates the directory (emptied first, should one be left from an earlier run); `label`
    /// names the test file, for whoever looks in the temp dir.
    pub fn new(label: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("octollm-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `sqlite://<dir>/log.db`: a request log of its own, for `--storage`.
    pub fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.path.join("log.db").display())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::TempDir;

    #[test]
    fn each_is_fresh_and_removed_on_drop() {
        let a = TempDir::new("temp-test");
        let b = TempDir::new("temp-test");
        assert_ne!(a.path(), b.path());
        assert!(a.path().is_dir());
        assert!(a.sqlite_url().ends_with("/log.db"), "{}", a.sqlite_url());
        let path = a.path().to_owned();
        std::fs::write(path.join("f"), "x").unwrap();
        drop(a);
        assert!(!path.exists());
    }
}
