//! The web panel's files, embedded in the binary and served at `/` of the admin listener without
//! credentials (they hold no data; every API call they make is authenticated).
//!
//! The files are the committed build in `crates/octo-server/panel/dist` (built from the
//! TypeScript sources beside it with `npm ci && npm run build`; `scripts/test.sh` rebuilds them and
//! fails when they differ), so building the server needs no Node. Fixed names, `no-cache` with an
//! ETag: a browser revalidates and gets a 304 until the binary changes. A strict
//! Content-Security-Policy allows nothing but this origin: no CDN, no inline script, no fonts.

use std::sync::OnceLock;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::AdminState;

/// One embedded file.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../panel/dist/index.html"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../panel/dist/assets/app.js"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../panel/dist/assets/app.css"),
    },
];

/// The Content-Security-Policy of every panel file.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The embedded files' total size in bytes (reported by tests and docs).
pub fn total_size() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let d = Sha256::digest(a.body);
                let hex: String = d[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

fn serve(i: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

pub(super) fn routes() -> Router<AdminState> {
    let mut router = Router::new();
    for (i, a) in ASSETS.iter().enumerate() {
        router = router.route(
            a.path,
            get(move |headers: HeaderMap| async move { serve(i, &headers) }),
        );
    }
    router.route(
        "/index.html",
        get(|headers: HeaderMap| async move { serve(0, &headers) }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_build_is_embedded_and_small() {
        let html = std::str::from_utf8(ASSETS[0].body).unwrap();
        assert!(html.contains("/assets/app.js") && html.contains("/assets/app.css"));
        for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
            assert!(!html.contains(attr), "no outside request: {attr}");
        }
        assert!(total_size() < 400_000, "{} bytes", total_size());
    }
}
