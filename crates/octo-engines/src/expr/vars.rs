//! What each identifier an expression reads refers to.

use http::HeaderName;

/// The largest N accepted in `prefix<N>` / `suffix<N>`.
const MAX_FEATURE_LEN: usize = 100_000;

/// Where a variable's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// The requested model (route-aware).
    Model,
    /// The stream flag (route-aware; `false` when absent).
    Stream,
    /// A body field: one segment for a top-level field, more for a nested path.
    Body(Vec<String>),
    /// A client request header.
    Header(HeaderName),
    /// The authenticated org.
    Org,
    /// The authenticated key's name.
    User,
    /// Total message text length.
    PromptTextLen,
    /// Hash of the model and the first N characters of the first message.
    Prefix(usize),
    /// Hash of the model and the last N characters of the first message.
    Suffix(usize),
}

impl Source {
    /// Whether the value needs the message text (and so a full parse).
    pub(crate) fn needs_text(&self) -> bool {
        matches!(
            self,
            Source::PromptTextLen | Source::Prefix(_) | Source::Suffix(_)
        )
    }
}

/// Classifies an identifier; `Err` says why it cannot be read.
pub(crate) fn classify(ident: &str) -> Result<Source, String> {
    if ident == "RawReq" {
        return Err("`RawReq` alone is not a value; name a field, e.g. `RawReq.model`".into());
    }
    if let Some(path) = ident.strip_prefix("RawReq.") {
        return body(path, ident);
    }
    if let Some(name) = ident.strip_prefix("header.") {
        let name = name.to_ascii_lowercase().replace('_', "-");
        return HeaderName::from_bytes(name.as_bytes())
            .map(Source::Header)
            .map_err(|_| format!("`{ident}` does not name a valid header"));
    }
    if let Some(field) = ident.strip_prefix("auth.") {
        return match field {
            "org" => Ok(Source::Org),
            "user" => Ok(Source::User),
            _ => Err(format!(
                "unknown variable `{ident}`; the auth namespace has `auth.org` and `auth.user`"
            )),
        };
    }
    if let Some(name) = ident.strip_prefix("Features.") {
        return feature(name).ok_or_else(|| {
            format!("unknown feature `{ident}`; features are promptTextLen, prefix<N>, suffix<N>")
        });
    }
    if matches!(ident, "header" | "auth" | "Features") {
        return Err(format!(
            "`{ident}` alone is not a value; name a field, e.g. `{ident}.…` (use `RawReq.{ident}` for a body field of that name)"
        ));
    }
    if let Some(f) = feature(ident) {
        return Ok(f);
    }
    body(ident, ident)
}

fn body(path: &str, ident: &str) -> Result<Source, String> {
    let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
    if segments.iter().any(String::is_empty) {
        return Err(format!("`{ident}` has an empty path segment"));
    }
    Ok(match segments.as_slice() {
        [one] if one == "model" => Source::Model,
        [one] if one == "stream" => Source::Stream,
        _ => Source::Body(segments),
    })
}

fn feature(name: &str) -> Option<Source> {
    if name == "promptTextLen" {
        return Some(Source::PromptTextLen);
    }
    let len = |digits: &str| {
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse::<usize>().ok())
            .flatten()
            .filter(|n| (1..=MAX_FEATURE_LEN).contains(n))
    };
    if let Some(n) = name.strip_prefix("prefix").and_then(len) {
        return Some(Source::Prefix(n));
    }
    name.strip_prefix("suffix")
        .and_then(len)
        .map(Source::Suffix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_namespace() {
        assert_eq!(classify("model"), Ok(Source::Model));
        assert_eq!(classify("RawReq.model"), Ok(Source::Model));
        assert_eq!(classify("RawReq.stream"), Ok(Source::Stream));
        assert_eq!(
            classify("max_tokens"),
            Ok(Source::Body(vec!["max_tokens".into()]))
        );
        assert_eq!(
            classify("messages.0.role"),
            Ok(Source::Body(vec![
                "messages".into(),
                "0".into(),
                "role".into()
            ]))
        );
        assert_eq!(
            classify("header.X_Team"),
            Ok(Source::Header(HeaderName::from_static("x-team")))
        );
        assert_eq!(classify("auth.org"), Ok(Source::Org));
        assert_eq!(classify("auth.user"), Ok(Source::User));
        assert_eq!(classify("prefix20"), Ok(Source::Prefix(20)));
        assert_eq!(classify("Features.suffix5"), Ok(Source::Suffix(5)));
        assert_eq!(classify("promptTextLen"), Ok(Source::PromptTextLen));
        assert_eq!(
            classify("RawReq.header"),
            Ok(Source::Body(vec!["header".into()]))
        );
        // Not features: fall back to body fields.
        assert_eq!(classify("prefix"), Ok(Source::Body(vec!["prefix".into()])));
        assert_eq!(
            classify("prefix0"),
            Ok(Source::Body(vec!["prefix0".into()]))
        );
    }

    #[test]
    fn refuses_what_cannot_be_read() {
        assert!(classify("RawReq").is_err());
        assert!(classify("auth.team").is_err());
        assert!(classify("Features.bogus").is_err());
        assert!(classify("header").is_err());
        assert!(classify("a..b").is_err());
        assert!(classify("header.bad(name").is_err());
    }
}
