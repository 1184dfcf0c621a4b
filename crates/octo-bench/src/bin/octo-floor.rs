//! `octo-floor`: the smallest reverse proxy that can stand where the gateway stands — the floor
//! the load harness measures the gateway against.
//!
//! hyper 1.x server (hyper-util's auto builder, HTTP/1.1 + h2c, `TCP_NODELAY`, as the gateway)
//! forwarding every request to `--upstream` with hyper-util's legacy pooled client (keep-alive,
//! `TCP_NODELAY`; with `--upstream-h2c`, HTTP/2 without TLS toward the upstream, every request a
//! stream on one connection, as the gateway's `http_version: h2c`). Request and response bodies
//! stream straight through; nothing is parsed, buffered
//! or rewritten except the URI, `host` and hop-by-hop headers. Whatever the gateway costs beyond
//! this is its own work.
//!
//! Prints `octo-floor listening on http://ADDR` once bound, then serves until killed.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// A bare hyper reverse proxy (the benchmark floor).
#[derive(Debug, Parser)]
#[command(name = "octo-floor", version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The upstream root, e.g. `http://127.0.0.1:9001`.
    #[arg(long)]
    upstream: String,
    /// Speak HTTP/2 without TLS (h2c, prior knowledge) to the upstream instead of HTTP/1.1.
    #[arg(long)]
    upstream_h2c: bool,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
];

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let upstream: Uri = args
        .upstream
        .parse()
        .map_err(|e| std::io::Error::other(format!("--upstream: {e}")))?;
    let authority = upstream
        .authority()
        .cloned()
        .ok_or_else(|| std::io::Error::other("--upstream must name a host"))?;
    // The same runtime the gateway uses: multi-threaded, one worker per CPU it may run on.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(args.listen, authority, args.upstream_h2c))
}

async fn serve(listen: SocketAddr, authority: Authority, h2c: bool) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "octo-floor listening on http://{}",
            listener.local_addr()?
        )?;
        out.flush()?;
    }
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .http2_only(h2c)
        .build(connector);
    let version = if h2c {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    let host = HeaderValue::from_str(authority.as_str())
        .map_err(|e| std::io::Error::other(format!("--upstream host: {e}")))?;
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let authority = authority.clone();
        let host = host.clone();
        let service = hyper::service::service_fn(move |req| {
            forward(
                client.clone(),
                authority.clone(),
                host.clone(),
                version,
                req,
            )
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

async fn forward(
    client: Client<HttpConnector, Incoming>,
    authority: Authority,
    host: HeaderValue,
    version: http::Version,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority);
    uri.path_and_query = Some(
        parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    parts.uri = match Uri::from_parts(uri) {
        Ok(u) => u,
        Err(_) => return Ok(bad_gateway()),
    };
    // The upstream connection's version (HTTP/1.1, or h2c), whatever the client spoke.
    parts.version = version;
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    if version == http::Version::HTTP_2 {
        // HTTP/2 carries the authority in the URI (`:authority`).
        parts.headers.remove(header::HOST);
    } else {
        parts.headers.insert(header::HOST, host);
    }
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            for name in HOP_BY_HOP {
                parts.headers.remove(name);
            }
            Ok(Response::from_parts(parts, body.boxed()))
        }
        Err(_) => Ok(bad_gateway()),
    }
}

fn bad_gateway() -> Response<ProxyBody> {
    let body = Full::new(Bytes::from_static(b"{\"error\":\"bad gateway\"}"))
        .map_err(|never: Infallible| match never {})
        .boxed();
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp
}
