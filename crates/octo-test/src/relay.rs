//! A TCP relay in front of a service (PostgreSQL, MariaDB, Redis) that can be made to stall: the
//! "slow" rows of the fault matrix, made deterministically.
//!
//! Every connection accepted on an ephemeral loopback port is relayed to the target. While the
//! relay is [stalled](Relay::stall), it neither reads nor forwards a byte in either direction
//! (new connections are accepted and connected, then wait too), so every call through it
//! waits as on a database stuck behind a lock or a congested link, for exactly as long as the
//! test says; [`resume`](Relay::resume) lets the held bytes through, in order. A timer-based
//! delay would make the test's outcome depend on the machine's speed; a switch does not.
//! [`freeze`](Relay::freeze) stalls only the connections open now, for good, while later ones
//! pass: a server that hangs on its connections without closing them, for a client that
//! abandons a hung connection and opens another.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the relay lets through: nothing while `stalled`; never anything on the connections
/// numbered below `frozen_below` (in order of acceptance, from 0).
#[derive(Debug, Clone, Copy, Default)]
struct Switch {
    stalled: bool,
    frozen_below: usize,
}

impl Switch {
    fn passes(&self, conn: usize) -> bool {
        !self.stalled && conn >= self.frozen_below
    }
}

/// A stallable TCP relay; see the [module docs](self). Dropping it closes every connection.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    stalled: watch::Sender<Switch>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Starts a relay to `target` (on the current Tokio runtime), not stalled.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let (stalled, rx) = watch::channel(Switch::default());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            // Owned here: aborting the accept loop drops (and aborts) every connection's task.
            let mut conns = JoinSet::new();
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let id = count.fetch_add(1, Ordering::Relaxed);
                let rx = rx.clone();
                conns.spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::select! {
                        () = pump(cr, sw, rx.clone(), id) => {}
                        () = pump(sr, cw, rx, id) => {}
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Relay {
            addr,
            stalled,
            accepted,
            task,
        }
    }

    /// Starts a relay to the `host:port` of `url` (`scheme://[user[:password]@]host:port/...`).
    pub async fn for_url(url: &str) -> Relay {
        let target = authority(url)
            .parse()
            .unwrap_or_else(|e| panic!("{url}: the host must be an IP address and port ({e})"));
        Relay::start(target).await
    }

    /// The relay's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `url` with its `host:port` replaced by the relay's.
    pub fn url(&self, url: &str) -> String {
        url.replacen(authority(url), &self.addr.to_string(), 1)
    }

    /// Stops every byte in both directions, on every connection, until [`resume`](Self::resume).
    pub fn stall(&self) {
        self.stalled.send_modify(|s| s.stalled = true);
    }

    /// Lets the held bytes through, in order (not on [frozen](Self::freeze) connections).
    pub fn resume(&self) {
        self.stalled.send_modify(|s| s.stalled = false);
    }

    /// Stops every byte, for good, on the connections accepted so far (they stay open); later
    /// connections are relayed as usual.
    pub fn freeze(&self) {
        let n = self.accepted();
        self.stalled.send_modify(|s| s.frozen_below = n);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `host:port` part of `url`.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest)
}

/// Copies `from` to `to`, waiting (neither reading nor writing) while the relay is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<Switch>,
    id: usize,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if stalled.wait_for(|s| s.passes(id)).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a stall are held too.
        if stalled.wait_for(|s| s.passes(id)).await.is_err()
            || to.write_all(&buf[..n]).await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::authority;

    #[test]
    fn authority_of_service_urls() {
        assert_eq!(
            authority("postgres://postgres@127.0.0.1:5432/octollm"),
            "127.0.0.1:5432"
        );
        assert_eq!(
            authority("mysql://u:p@127.0.0.1:3306/db?x=1"),
            "127.0.0.1:3306"
        );
        assert_eq!(authority("redis://127.0.0.1:6379/0"), "127.0.0.1:6379");
        assert_eq!(authority("redis://127.0.0.1:6379"), "127.0.0.1:6379");
    }
}
