//! Converting a client request for the upstream: decode with the client's codec, normalise, encode
//! with the upstream's.

use std::sync::Arc;

use octo_core::{Error, Protocol, RouteParams};
use serde_json::Value;

use crate::canonical::CanonicalRequest;
use crate::codec::{ClientSide, Codec, codec};
use crate::options::{ConvertOptions, ReasoningMode};
use crate::response::ResponseConverter;
use crate::tools::{NameMap, ToolMap, ask_json_through_a_tool};
use crate::util::{b, bad, s, unsupported};

/// A request converted for the upstream, and what converts its answer back.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConvertedRequest {
    /// The request body for the upstream.
    pub body: Value,
    /// The route the upstream request takes: for a Gemini upstream the model and streaming flag
    /// its path carries, empty for the others.
    pub route: RouteParams,
    /// Converts the upstream's answer (complete or streamed) for the client.
    pub response: ResponseConverter,
}

/// Converts the body of a `client` request for an upstream that speaks `upstream`.
///
/// `route` is what the client's path said (Gemini carries the model and the streaming flag there).
/// Fails with a 400 naming the parameter when the request cannot be expressed for the upstream
/// without changing its meaning (see `docs/conversion.md`), and with an `unsupported` error when
/// either protocol is not one of the four chat protocols.
///
/// ```
/// use octo_convert::{ConvertOptions, convert_request};
/// use octo_core::{Protocol, RouteParams};
/// use serde_json::json;
///
/// let body = json!({"model": "gpt", "max_tokens": 64, "stream": true,
///                   "messages": [{"role": "user", "content": "Hello"}]});
/// let converted = convert_request(
///     Protocol::Anthropic,
///     Protocol::Gemini,
///     &body,
///     &RouteParams::default(),
///     &ConvertOptions::default(),
/// )
/// .unwrap();
/// assert_eq!(converted.body["contents"][0]["parts"][0]["text"], "Hello");
/// // Gemini names the model and streaming in the path.
/// assert_eq!(converted.route.model.as_deref(), Some("gpt"));
/// assert_eq!(converted.route.stream, Some(true));
/// assert!(converted.response.is_stream());
/// ```
pub fn convert_request(
    client: Protocol,
    upstream: Protocol,
    body: &Value,
    route: &RouteParams,
    options: &ConvertOptions,
) -> Result<ConvertedRequest, Error> {
    let (canon, to) = prepare(client, upstream, body, route, options)?;
    let body = to.encode_request(&canon.request, options)?;
    #[cfg(test)]
    assert_eq!(
        String::from_utf8(to.encode_request_bytes(&canon.request, options)?).unwrap(),
        body.to_string(),
        "the upstream's bytes written directly are the document's"
    );
    let route = to.upstream_route(&canon.request);
    let response = canon.response(client, upstream)?;
    Ok(ConvertedRequest {
        body,
        route,
        response,
    })
}

/// A request converted for the upstream, its body already the bytes sent; see
/// [`convert_request_bytes`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConvertedRequestBytes {
    /// The request body for the upstream, serialised.
    pub body: Vec<u8>,
    /// As [`ConvertedRequest::route`].
    pub route: RouteParams,
    /// As [`ConvertedRequest::response`].
    pub response: ResponseConverter,
}

/// [`convert_request`] with the upstream's body as the bytes sent: the same conversion, the
/// bytes of [`ConvertedRequest::body`] serialised, but written without building that document
/// where the upstream's codec can (OpenAI Chat, for requests of text turns).
///
/// ```
/// use octo_convert::{ConvertOptions, convert_request, convert_request_bytes};
/// use octo_core::{Protocol, RouteParams};
/// use serde_json::json;
///
/// let body = json!({"model": "gpt", "max_tokens": 64,
///                   "messages": [{"role": "user", "content": "Hello"}]});
/// let (client, upstream, route, opts) =
///     (Protocol::Anthropic, Protocol::OpenAiChat, RouteParams::default(), ConvertOptions::default());
/// let bytes = convert_request_bytes(client, upstream, &body, &route, &opts).unwrap();
/// let tree = convert_request(client, upstream, &body, &route, &opts).unwrap();
/// assert_eq!(bytes.body, serde_json::to_vec(&tree.body).unwrap());
/// ```
pub fn convert_request_bytes(
    client: Protocol,
    upstream: Protocol,
    body: &Value,
    route: &RouteParams,
    options: &ConvertOptions,
) -> Result<ConvertedRequestBytes, Error> {
    let (canon, to) = prepare(client, upstream, body, route, options)?;
    let body = to.encode_request_bytes(&canon.request, options)?;
    let route = to.upstream_route(&canon.request);
    let response = canon.response(client, upstream)?;
    Ok(ConvertedRequestBytes {
        body,
        route,
        response,
    })
}

/// A client request decoded and made ready for the upstream's encoder.
struct Prepared {
    request: CanonicalRequest,
    tools: Arc<ToolMap>,
    names: NameMap,
}

impl Prepared {
    fn response(self, client: Protocol, upstream: Protocol) -> Result<ResponseConverter, Error> {
        ResponseConverter::for_request(
            client,
            upstream,
            self.request.stream,
            self.names,
            ClientSide {
                model: self.request.model,
                include_usage: self.request.include_usage,
                tools: self.tools,
            },
        )
    }
}

/// Decodes the client's request and normalises it for `upstream`; with the upstream's codec.
fn prepare(
    client: Protocol,
    upstream: Protocol,
    body: &Value,
    route: &RouteParams,
    options: &ConvertOptions,
) -> Result<(Prepared, &'static dyn Codec), Error> {
    let mut canon = decode_request(codec(client)?, body, route)?;
    refuse_several_choices(client, upstream, &canon)?;
    canon.normalize();
    let tools = Arc::new(ToolMap::from_request(&canon));
    if options.reasoning == ReasoningMode::Drop && canon.reasoning.take().is_some() {
        tracing::debug!(upstream = %upstream, "dropping the reasoning controls (conversion.reasoning: drop)");
    }
    // Anthropic has JSON schemas but no "any JSON object": that is asked through a tool.
    let json_answer = upstream == Protocol::Anthropic && ask_json_through_a_tool(&mut canon);
    let names = NameMap::shorten(&mut canon).with_json_answer(json_answer);
    let prepared = Prepared {
        request: canon,
        tools,
        names,
    };
    Ok((prepared, codec(upstream)?))
}

/// Refuses `n` / `candidateCount` above 1: a converted answer carries one candidate, and cutting
/// the others silently would change the answer (`docs/conversion.md`, "Several choices").
fn refuse_several_choices(
    client: Protocol,
    upstream: Protocol,
    canon: &CanonicalRequest,
) -> Result<(), Error> {
    let Some(n) = canon.n.filter(|n| *n > 1) else {
        return Ok(());
    };
    let param = if client == Protocol::Gemini {
        "generationConfig.candidateCount"
    } else {
        "n"
    };
    Err(unsupported(
        param,
        format!(
            "`{param}` is {n}, but this model's upstream speaks {upstream}, and an answer converted from another protocol carries one candidate; ask for one (send several requests for several candidates) or use a backend that speaks {client}"
        ),
    ))
}

/// The prelude every protocol shares: the body must be a JSON object; `model` and `stream` are
/// read where most protocols keep them and usage is wanted in streams (a codec overrides what its
/// protocol says otherwise); tool results get the names of the calls they answer.
pub(crate) fn decode_request(
    from: &dyn Codec,
    body: &Value,
    route: &RouteParams,
) -> Result<CanonicalRequest, Error> {
    let mut r = from.decode_request(body, route, prelude(body)?)?;
    r.fill_tool_result_names();
    Ok(r)
}

/// The fields every codec starts from; refuses a body that is not a JSON object.
pub(crate) fn prelude(body: &Value) -> Result<CanonicalRequest, Error> {
    if !body.is_object() {
        return Err(bad("", "request body must be a JSON object"));
    }
    Ok(CanonicalRequest {
        model: s(body, "model").unwrap_or_default().to_owned(),
        stream: b(body, "stream").unwrap_or(false),
        include_usage: true,
        ..CanonicalRequest::default()
    })
}
