//! Sign-in rate limits: per client address, every attempt counts; per user name, failed attempts
//! count. Fixed windows held in memory (bounded), so guessing a password costs an attacker minutes
//! per handful of tries and never makes the server hash passwords without bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts one address may make per [`ADDR_WINDOW`].
pub const ADDR_ATTEMPTS: u32 = 20;
/// The per-address window.
pub const ADDR_WINDOW: Duration = Duration::from_secs(60);
/// Failed attempts one user name may take per [`USER_WINDOW`].
pub const USER_FAILURES: u32 = 5;
/// The per-user window.
pub const USER_WINDOW: Duration = Duration::from_secs(300);
/// Entries kept per table before expired ones are swept.
const CAP: usize = 10_000;

#[derive(Debug)]
struct Windows<K> {
    limit: u32,
    width: Duration,
    map: HashMap<K, (Instant, u32)>,
}

impl<K: Hash + Eq> Windows<K> {
    fn new(limit: u32, width: Duration) -> Self {
        Windows {
            limit,
            width,
            map: HashMap::new(),
        }
    }

    /// `Some(wait)` when `key` is over its limit.
    fn blocked(&self, key: &K, now: Instant) -> Option<Duration> {
        let (start, n) = self.map.get(key)?;
        let end = *start + self.width;
        (n >= &self.limit && end > now).then(|| end - now)
    }

    fn add(&mut self, key: K, now: Instant) {
        if self.map.len() >= CAP {
            let width = self.width;
            self.map.retain(|_, (start, _)| *start + width > now);
        }
        let e = self.map.entry(key).or_insert((now, 0));
        if e.0 + self.width <= now {
            *e = (now, 0);
        }
        e.1 += 1;
    }

    fn clear(&mut self, key: &K) {
        self.map.remove(key);
    }
}

/// The sign-in limiter.
#[derive(Debug)]
pub struct Limiter {
    addrs: Mutex<Windows<IpAddr>>,
    users: Mutex<Windows<String>>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            addrs: Mutex::new(Windows::new(ADDR_ATTEMPTS, ADDR_WINDOW)),
            users: Mutex::new(Windows::new(USER_FAILURES, USER_WINDOW)),
        }
    }
}

/// Why an attempt is refused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// Too many attempts from this address.
    Address(Duration),
    /// Too many failures for this user name.
    User(Duration),
}

impl Limiter {
    /// Counts an attempt from `addr` for `user` (`None`: a token sign-in); refuses it when either
    /// is over its limit (a refused attempt is not checked, so it costs no hashing).
    pub fn attempt(&self, addr: IpAddr, user: Option<&str>) -> Result<(), Limited> {
        let now = Instant::now();
        let mut addrs = self.addrs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(wait) = addrs.blocked(&addr, now) {
            return Err(Limited::Address(wait));
        }
        if let Some(user) = user {
            let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(wait) = users.blocked(&user.to_owned(), now) {
                return Err(Limited::User(wait));
            }
        }
        addrs.add(addr, now);
        Ok(())
    }

    /// Records a failed attempt for `user`.
    pub fn failed(&self, user: &str) {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(user.to_owned(), Instant::now());
    }

    /// Forgets `user`'s failures after a successful sign-in.
    pub fn succeeded(&self, user: &str) {
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear(&user.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_failures_and_address_attempts_are_limited() {
        let l = Limiter::default();
        let a: IpAddr = [127, 0, 0, 1].into();
        for _ in 0..USER_FAILURES {
            l.attempt(a, Some("ada")).unwrap();
            l.failed("ada");
        }
        assert!(matches!(l.attempt(a, Some("ada")), Err(Limited::User(_))));
        // Another user from the same address is still let through.
        l.attempt(a, Some("bo")).unwrap();
        l.succeeded("ada");
        l.attempt(a, Some("ada")).unwrap();
        let b: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..ADDR_ATTEMPTS {
            l.attempt(b, None).unwrap();
        }
        assert!(matches!(l.attempt(b, None), Err(Limited::Address(_))));
    }
}
