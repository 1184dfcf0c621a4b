//! A raw-TCP upstream for byte-level faults the mock (a real HTTP server) cannot produce: a reset
//! before the response head, a head and then silence, a body dripping one byte at a time, bytes
//! that are not what the head promised, an endless body. It counts the connections it holds, so a
//! test can check that the gateway let go of each one ([`FaultServer::wait_released`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A response head for a server-sent event stream whose end is the connection's close.
pub const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";

/// A JSON response head whose end is the connection's close.
pub const JSON_HEAD: &str =
    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";

/// What the server does with each request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Reads the request, then resets the connection (RST) without a byte of answer.
    ResetBeforeHead,
    /// Sends the head, then nothing, holding the connection until the peer closes it.
    HeadThenSilence(String),
    /// Sends the head, then the body one byte per `interval`, then closes.
    Drip {
        /// The response head.
        head: String,
        /// The body, sent a byte at a time.
        body: Vec<u8>,
        /// The pause before each byte.
        interval: Duration,
    },
    /// Sends these bytes (head and body) and closes.
    Raw(Vec<u8>),
    /// Sends the head, then `chunk` again and again until `total` bytes or the peer leaves.
    Endless {
        /// The response head.
        head: String,
        /// What is repeated.
        chunk: Vec<u8>,
        /// When to stop, in bytes of body.
        total: usize,
    },
}

/// The raw-TCP fault upstream; stops accepting when dropped.
pub struct FaultServer {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultServer {
    /// Starts serving `fault` to every connection, on an ephemeral loopback port.
    pub async fn start(fault: Fault) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (accepted, open) = (accepted.clone(), open.clone());
            async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    open.fetch_add(1, Ordering::SeqCst);
                    let (fault, open) = (fault.clone(), open.clone());
                    tokio::spawn(async move {
                        let _ = serve(stream, &fault).await;
                        open.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
        });
        FaultServer {
            url,
            accepted,
            open,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections still open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until every connection has been closed (by the gateway, or by the fault's own end);
    /// panics naming `what` when one is still open after `deadline`.
    pub async fn wait_released(&self, deadline: Duration, what: &str) {
        let start = Instant::now();
        while self.open() > 0 {
            assert!(
                start.elapsed() < deadline,
                "{what}: {} upstream connection(s) still open after {deadline:?}",
                self.open()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head and `content-length` body), then plays `fault`.
async fn serve(mut stream: TcpStream, fault: &Fault) -> std::io::Result<()> {
    read_request(&mut stream).await?;
    match fault {
        Fault::ResetBeforeHead => {
            stream.set_zero_linger()?;
            drop(stream);
        }
        Fault::HeadThenSilence(head) => {
            stream.write_all(head.as_bytes()).await?;
            until_closed(&mut stream).await;
        }
        Fault::Drip {
            head,
            body,
            interval,
        } => {
            stream.write_all(head.as_bytes()).await?;
            let (mut read, mut write) = stream.split();
            let drip = async {
                for byte in body {
                    tokio::time::sleep(*interval).await;
                    write.write_all(&[*byte]).await?;
                }
                std::io::Result::Ok(())
            };
            let mut sink = [0u8; 1024];
            tokio::select! {
                r = drip => r?,
                _ = read.read(&mut sink) => {}
            }
        }
        Fault::Raw(bytes) => {
            stream.write_all(bytes).await?;
            stream.shutdown().await?;
        }
        Fault::Endless { head, chunk, total } => {
            stream.write_all(head.as_bytes()).await?;
            let mut sent = 0;
            while sent < *total {
                stream.write_all(chunk).await?;
                sent += chunk.len();
            }
            stream.shutdown().await?;
        }
    }
    Ok(())
}

/// Reads a request head and its `content-length` body.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Ok(())
}

/// Waits for the peer to close (EOF or an error).
async fn until_closed(stream: &mut TcpStream) {
    let mut sink = [0u8; 1024];
    while let Ok(n) = stream.read(&mut sink).await {
        if n == 0 {
            break;
        }
    }
}
