//! Embeddings conversion between OpenAI `POST /v1/embeddings` and Gemini `embedContent` /
//! `batchEmbedContents`, without IO.
//!
//! Embeddings are not chat: there are no turns, tools or streams, so they do not go through the
//! canonical chat model. A request is a list of texts (plus the wanted dimensions), an answer a
//! list of vectors in the same order; this module maps the two shapes onto each other.
//!
//! | concept | OpenAI embeddings | Gemini |
//! |---|---|---|
//! | texts | `input`: a string or a list of strings | one `content` (`embedContent`) or `requests[].content` (`batchEmbedContents`); the text parts of one content are joined with a newline |
//! | model | `model` | the path's `models/{model}`, and `requests[].model` |
//! | dimensions | `dimensions` | `outputDimensionality` (one value for the whole request toward OpenAI) |
//! | vectors | `data[].embedding` (floats, or base64 of little-endian `f32` with `encoding_format: "base64"`) | `embedding.values` / `embeddings[].values` |
//! | usage | `usage.prompt_tokens` | none in the public API (`usageMetadata` read when given): estimated as the texts' characters / 4 |
//!
//! Toward Gemini, a request of more than [`GEMINI_MAX_BATCH`] texts (OpenAI allows 2048) is sent as
//! several `batchEmbedContents` calls of at most that many ([`EmbeddingsConversion::upstream_bodies`])
//! whose answers are joined in order ([`merge_gemini_answers`]).
//!
//! Refused with a 400 naming the field: token-id inputs toward Gemini (Gemini takes text), non-text
//! parts toward OpenAI, different `outputDimensionality` values in one batch toward OpenAI.
//! Dropped with a `debug` log: `user` toward Gemini, `taskType` and `title` toward OpenAI.
//!
//! ```
//! use octo_convert::embeddings::{EmbeddingsConversion, convert_embeddings_request};
//! use octo_core::Protocol;
//! use serde_json::json;
//!
//! // An OpenAI client, a Gemini upstream.
//! let client = json!({"model": "gemini-embedding-001", "input": ["a", "b"], "dimensions": 4});
//! let conv = convert_embeddings_request(
//!     Protocol::OpenAiEmbeddings, Protocol::GeminiEmbeddings, &client, "gemini-embedding-001",
//! ).unwrap();
//! assert_eq!(conv.body["requests"][1]["content"]["parts"][0]["text"], "b");
//! assert_eq!(conv.body["requests"][0]["outputDimensionality"], 4);
//! assert_eq!(conv.path.as_deref(), Some("/v1beta/models/gemini-embedding-001:batchEmbedContents"));
//!
//! let answer = json!({"embeddings": [{"values": [0.5, 0.5]}, {"values": [1.0, 0.0]}]});
//! let v = conv.answer.convert(&answer).unwrap();
//! assert_eq!(v["data"][1]["embedding"], json!([1.0, 0.0]));
//! assert_eq!(v["usage"]["prompt_tokens"], 2);
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use octo_core::usage::Usage;
use octo_core::{Error, Protocol};
use serde_json::{Map, Value, json};

/// The most requests one Gemini `batchEmbedContents` call accepts ("at most 100 requests can be in
/// one batch").
pub const GEMINI_MAX_BATCH: usize = 100;

/// A converted embeddings request: the upstream body, the upstream path where the upstream
/// protocol puts the model and action in it (Gemini), and how to convert the answer.
#[derive(Debug, Clone)]
pub struct EmbeddingsConversion {
    /// The body to send upstream.
    pub body: Value,
    /// The request path for a Gemini upstream (`/v1beta/models/{model}:batchEmbedContents`);
    /// `None` for OpenAI, whose path is fixed.
    pub path: Option<String>,
    /// Converts the upstream's answer.
    pub answer: EmbeddingsAnswer,
}

impl EmbeddingsConversion {
    /// The upstream request bodies to send, in order: [`EmbeddingsConversion::body`] as one, or,
    /// toward Gemini, split into batches of at most [`GEMINI_MAX_BATCH`] requests.
    pub fn upstream_bodies(&self) -> Vec<Value> {
        match self.body.get("requests").and_then(Value::as_array) {
            Some(requests) if requests.len() > GEMINI_MAX_BATCH => requests
                .chunks(GEMINI_MAX_BATCH)
                .map(|chunk| json!({"requests": chunk}))
                .collect(),
            _ => vec![self.body.clone()],
        }
    }
}

/// Joins the answers of several Gemini `batchEmbedContents` calls (in the order they were sent) into
/// one: the embeddings concatenated, `usageMetadata` token counts added up when every answer has
/// them.
pub fn merge_gemini_answers(answers: Vec<Value>) -> Value {
    if answers.len() == 1 {
        return answers.into_iter().next().unwrap_or(Value::Null);
    }
    let mut embeddings = Vec::new();
    let mut tokens = Some(0u64);
    for mut a in answers {
        if let Some(Value::Array(list)) = a.get_mut("embeddings").map(Value::take) {
            embeddings.extend(list);
        }
        tokens = tokens.and_then(|t| {
            let n = a.get("usageMetadata")?.get("promptTokenCount")?.as_u64()?;
            Some(t + n)
        });
    }
    let mut out = json!({"embeddings": embeddings});
    if let Some(t) = tokens {
        out["usageMetadata"] = json!({"promptTokenCount": t, "totalTokenCount": t});
    }
    out
}

/// Converts an upstream embeddings answer into the client's shape.
#[derive(Debug, Clone)]
pub struct EmbeddingsAnswer {
    client: Protocol,
    /// The model named in the answer (OpenAI clients).
    model: String,
    /// How many vectors the client asked for.
    count: usize,
    /// OpenAI client: vectors as base64 of little-endian `f32`.
    base64: bool,
    /// Gemini client: `embedContent` (one `embedding`) rather than `batchEmbedContents`.
    single: bool,
    /// The estimated input tokens, used when the upstream reports no usage.
    estimate: u64,
}

/// The texts of an embeddings request, for the usage estimate.
fn estimate_tokens<'a>(texts: impl IntoIterator<Item = &'a str>) -> u64 {
    texts
        .into_iter()
        .map(|t| (t.chars().count() as u64).div_ceil(4).max(1))
        .sum()
}

fn invalid(param: &str, message: impl Into<String>) -> Error {
    Error::bad_request(message).with_param(param)
}

/// Converts a client's embeddings request (`client`, one of the two embeddings protocols) for an
/// upstream speaking `upstream`. `model` is the upstream model name (already routed).
///
/// # Errors
/// A 400 naming the field when the request is malformed or asks for something the upstream
/// cannot express (see the [module docs](self)); an unsupported error when either protocol is not
/// an embeddings protocol.
pub fn convert_embeddings_request(
    client: Protocol,
    upstream: Protocol,
    body: &Value,
    model: &str,
) -> Result<EmbeddingsConversion, Error> {
    let Some(obj) = body.as_object() else {
        return Err(Error::bad_request("the request body must be a JSON object"));
    };
    match (client, upstream) {
        (Protocol::OpenAiEmbeddings, Protocol::GeminiEmbeddings) => openai_to_gemini(obj, model),
        (Protocol::GeminiEmbeddings, Protocol::OpenAiEmbeddings) => gemini_to_openai(obj, model),
        (c, u) if c == u && c.is_embeddings() => Err(Error::internal(
            "an embeddings request in the upstream's protocol passes through unconverted",
        )),
        (c, u) => Err(Error::unsupported(format!(
            "no embeddings conversion from {c} to {u}"
        ))),
    }
}

/// The texts of OpenAI's `input`.
fn openai_texts(input: Option<&Value>) -> Result<Vec<&str>, Error> {
    let tokens = || {
        invalid(
            "input",
            "`input` holds token ids, which a Gemini upstream cannot embed; send the text",
        )
    };
    match input {
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.as_str()),
                Value::Number(_) | Value::Array(_) => Err(tokens()),
                _ => Err(invalid(
                    "input",
                    "`input` must be a string or a list of strings",
                )),
            })
            .collect(),
        Some(Value::Array(_)) => Err(invalid("input", "`input` must not be empty")),
        None => Err(invalid("input", "`input` is required")),
        Some(_) => Err(invalid(
            "input",
            "`input` must be a string or a list of strings",
        )),
    }
}

fn openai_to_gemini(obj: &Map<String, Value>, model: &str) -> Result<EmbeddingsConversion, Error> {
    let texts = openai_texts(obj.get("input"))?;
    let dimensions = match obj.get("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|d| *d > 0)
                .ok_or_else(|| invalid("dimensions", "`dimensions` must be a positive integer"))?,
        ),
    };
    let base64 = match obj.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(invalid(
                "encoding_format",
                format!("`encoding_format` must be `float` or `base64`, not `{other}`"),
            ));
        }
    };
    if obj.contains_key("user") {
        tracing::debug!("`user` dropped: Gemini embeddings have no such field");
    }
    let model_ref = format!("models/{model}");
    let requests: Vec<Value> = texts
        .iter()
        .map(|text| {
            let mut r = json!({"model": model_ref, "content": {"parts": [{"text": text}]}});
            if let Some(d) = dimensions {
                r["outputDimensionality"] = d.into();
            }
            r
        })
        .collect();
    Ok(EmbeddingsConversion {
        body: json!({"requests": requests}),
        path: Some(format!("/v1beta/models/{model}:batchEmbedContents")),
        answer: EmbeddingsAnswer {
            client: Protocol::OpenAiEmbeddings,
            model: model.to_owned(),
            count: texts.len(),
            base64,
            single: false,
            estimate: estimate_tokens(texts.iter().copied()),
        },
    })
}

/// The text of one Gemini `content` (its text parts, joined with a newline).
fn gemini_text(content: Option<&Value>, at: &str) -> Result<String, Error> {
    let parts = content
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(at, format!("`{at}.parts` is required")))?;
    let mut texts = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        match part.get("text").and_then(Value::as_str) {
            Some(t) => texts.push(t),
            None => {
                return Err(invalid(
                    &format!("{at}.parts[{i}]"),
                    format!(
                        "`{at}.parts[{i}]` is not text; an OpenAI embeddings upstream embeds text only"
                    ),
                ));
            }
        }
    }
    Ok(texts.join("\n"))
}

fn dropped_gemini_fields(r: &Map<String, Value>) {
    for field in ["taskType", "task_type", "title"] {
        if r.contains_key(field) {
            tracing::debug!("`{field}` dropped: OpenAI embeddings have no such field");
        }
    }
}

fn output_dimensionality(r: &Map<String, Value>, at: &str) -> Result<Option<u64>, Error> {
    match r
        .get("outputDimensionality")
        .or_else(|| r.get("output_dimensionality"))
    {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().filter(|d| *d > 0).map(Some).ok_or_else(|| {
            invalid(
                &format!("{at}outputDimensionality"),
                "`outputDimensionality` must be a positive integer",
            )
        }),
    }
}

fn gemini_to_openai(obj: &Map<String, Value>, model: &str) -> Result<EmbeddingsConversion, Error> {
    let (texts, dimensions, single) = if let Some(requests) = obj.get("requests") {
        let requests = requests
            .as_array()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| invalid("requests", "`requests` must be a non-empty list"))?;
        let mut texts = Vec::with_capacity(requests.len());
        let mut dimensions: Option<Option<u64>> = None;
        for (i, r) in requests.iter().enumerate() {
            let at = format!("requests[{i}]");
            let r = r
                .as_object()
                .ok_or_else(|| invalid(&at, format!("`{at}` must be an object")))?;
            texts.push(gemini_text(r.get("content"), &format!("{at}.content"))?);
            dropped_gemini_fields(r);
            let d = output_dimensionality(r, &format!("{at}."))?;
            match dimensions {
                None => dimensions = Some(d),
                Some(first) if first != d => {
                    return Err(invalid(
                        &format!("{at}.outputDimensionality"),
                        "every request of a batch must ask for the same `outputDimensionality` when the upstream is OpenAI embeddings",
                    ));
                }
                Some(_) => {}
            }
        }
        (texts, dimensions.flatten(), false)
    } else {
        let text = gemini_text(obj.get("content"), "content")?;
        dropped_gemini_fields(obj);
        (vec![text], output_dimensionality(obj, "")?, true)
    };
    let mut body = json!({"model": model, "input": texts, "encoding_format": "float"});
    if let Some(d) = dimensions {
        body["dimensions"] = d.into();
    }
    let estimate = estimate_tokens(texts.iter().map(String::as_str));
    Ok(EmbeddingsConversion {
        body,
        path: None,
        answer: EmbeddingsAnswer {
            client: Protocol::GeminiEmbeddings,
            model: model.to_owned(),
            count: texts.len(),
            base64: false,
            single,
            estimate,
        },
    })
}

/// Little-endian `f32`s, base64-encoded (OpenAI's `encoding_format: "base64"`).
pub fn encode_base64_vector(values: &[f64]) -> String {
    let mut bytes = Vec::with_capacity(values.len() * 4);
    for v in values {
        #[allow(clippy::cast_possible_truncation)] // the wire format is f32
        bytes.extend_from_slice(&(*v as f32).to_le_bytes());
    }
    STANDARD.encode(bytes)
}

/// The inverse of [`encode_base64_vector`].
///
/// # Errors
/// When `s` is not base64 of a whole number of `f32`s.
pub fn decode_base64_vector(s: &str) -> Result<Vec<f64>, Error> {
    let bytes = STANDARD
        .decode(s)
        .map_err(|e| Error::upstream(format!("an embedding is not valid base64: {e}")))?;
    if bytes.len() % 4 != 0 {
        return Err(Error::upstream(
            "a base64 embedding is not a whole number of 32-bit floats",
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect())
}

fn floats(v: &Value, what: &str) -> Result<Vec<f64>, Error> {
    let bad = || Error::upstream(format!("the upstream's {what} is not a list of numbers"));
    match v {
        Value::Array(items) => items.iter().map(|x| x.as_f64().ok_or_else(bad)).collect(),
        Value::String(s) => decode_base64_vector(s),
        _ => Err(bad()),
    }
}

impl EmbeddingsAnswer {
    /// The estimate of the request's input tokens (characters / 4 per text, at least 1 each), for
    /// an upstream that reports no usage.
    pub fn estimated_tokens(&self) -> u64 {
        self.estimate
    }

    /// Converts the upstream's complete answer into the client's.
    ///
    /// # Errors
    /// An upstream error when the answer is not an embeddings answer of the upstream's protocol,
    /// or holds a different number of vectors than the client sent texts.
    pub fn convert(&self, upstream: &Value) -> Result<Value, Error> {
        let vectors = match self.client {
            Protocol::OpenAiEmbeddings => gemini_vectors(upstream)?,
            _ => openai_vectors(upstream)?,
        };
        if vectors.len() != self.count {
            return Err(Error::upstream(format!(
                "the upstream answered {} embeddings for {} inputs",
                vectors.len(),
                self.count
            )));
        }
        Ok(match self.client {
            Protocol::OpenAiEmbeddings => {
                let data: Vec<Value> = vectors
                    .iter()
                    .enumerate()
                    .map(|(index, values)| {
                        let embedding = if self.base64 {
                            Value::String(encode_base64_vector(values))
                        } else {
                            json!(values)
                        };
                        json!({"object": "embedding", "index": index, "embedding": embedding})
                    })
                    .collect();
                let tokens = upstream
                    .get("usageMetadata")
                    .and_then(Usage::from_gemini)
                    .map_or(self.estimate, |u| u.total_input_tokens());
                json!({
                    "object": "list",
                    "data": data,
                    "model": self.model,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                })
            }
            _ if self.single => json!({"embedding": {"values": vectors[0]}}),
            _ => {
                let embeddings: Vec<Value> = vectors.iter().map(|v| json!({"values": v})).collect();
                json!({"embeddings": embeddings})
            }
        })
    }
}

/// The vectors of a Gemini answer: `embeddings[].values` or `embedding.values`.
fn gemini_vectors(v: &Value) -> Result<Vec<Vec<f64>>, Error> {
    if let Some(list) = v.get("embeddings").and_then(Value::as_array) {
        return list
            .iter()
            .map(|e| floats(e.get("values").unwrap_or(&Value::Null), "embedding"))
            .collect();
    }
    if let Some(one) = v.get("embedding") {
        return Ok(vec![floats(
            one.get("values").unwrap_or(&Value::Null),
            "embedding",
        )?]);
    }
    Err(Error::upstream(
        "the upstream's answer has no `embeddings` (not a Gemini embeddings answer)",
    ))
}

/// The vectors of an OpenAI answer, in `index` order.
fn openai_vectors(v: &Value) -> Result<Vec<Vec<f64>>, Error> {
    let data = v.get("data").and_then(Value::as_array).ok_or_else(|| {
        Error::upstream("the upstream's answer has no `data` (not an OpenAI embeddings answer)")
    })?;
    let mut indexed = Vec::with_capacity(data.len());
    for (pos, item) in data.iter().enumerate() {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .map_or(pos, |i| usize::try_from(i).unwrap_or(usize::MAX));
        let values = floats(item.get("embedding").unwrap_or(&Value::Null), "embedding")?;
        indexed.push((index, values));
    }
    indexed.sort_by_key(|(i, _)| *i);
    Ok(indexed.into_iter().map(|(_, v)| v).collect())
}

/// The texts of a Gemini embeddings request (`content` or `requests[].content`), for a usage
/// estimate when a Gemini client's request passes through to a Gemini upstream.
pub fn gemini_estimated_tokens(body: &Value) -> u64 {
    let text_of = |content: Option<&Value>| -> String {
        content
            .and_then(|c| c.get("parts"))
            .and_then(Value::as_array)
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    };
    let texts: Vec<String> = match body.get("requests").and_then(Value::as_array) {
        Some(requests) => requests.iter().map(|r| text_of(r.get("content"))).collect(),
        None => vec![text_of(body.get("content"))],
    };
    estimate_tokens(texts.iter().map(String::as_str))
}

/// Points every `requests[].model` of a Gemini `batchEmbedContents` body at `model` (the API
/// requires them to name the path's model). Returns whether anything changed.
pub fn gemini_batch_set_model(body: &mut Value, model: &str) -> bool {
    let want = format!("models/{model}");
    let mut changed = false;
    if let Some(requests) = body.get_mut("requests").and_then(Value::as_array_mut) {
        for r in requests.iter_mut().filter_map(Value::as_object_mut) {
            if r.get("model").and_then(Value::as_str) != Some(want.as_str()) {
                r.insert("model".to_owned(), Value::String(want.clone()));
                changed = true;
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(
        client: Protocol,
        upstream: Protocol,
        body: Value,
    ) -> Result<EmbeddingsConversion, Error> {
        convert_embeddings_request(client, upstream, &body, "up-model")
    }

    #[test]
    fn openai_string_input_and_base64_answer() {
        let conv = convert(
            Protocol::OpenAiEmbeddings,
            Protocol::GeminiEmbeddings,
            json!({"model": "up-model", "input": "hello world!", "encoding_format": "base64", "user": "u"}),
        )
        .unwrap();
        assert_eq!(
            conv.body,
            json!({"requests": [{"model": "models/up-model", "content": {"parts": [{"text": "hello world!"}]}}]})
        );
        let v = conv
            .answer
            .convert(&json!({"embeddings": [{"values": [0.25, -1.0]}]}))
            .unwrap();
        let b64 = v["data"][0]["embedding"].as_str().unwrap();
        assert_eq!(decode_base64_vector(b64).unwrap(), vec![0.25, -1.0]);
        assert_eq!(v["usage"], json!({"prompt_tokens": 3, "total_tokens": 3}));
        assert_eq!(v["model"], "up-model");
    }

    #[test]
    fn gemini_usage_metadata_wins_over_the_estimate() {
        let conv = convert(
            Protocol::OpenAiEmbeddings,
            Protocol::GeminiEmbeddings,
            json!({"model": "m", "input": ["x"]}),
        )
        .unwrap();
        let v = conv
            .answer
            .convert(&json!({"embeddings": [{"values": [1.0]}], "usageMetadata": {"promptTokenCount": 7}}))
            .unwrap();
        assert_eq!(v["usage"]["prompt_tokens"], 7);
    }

    #[test]
    fn openai_refusals_name_the_field() {
        for (body, param) in [
            (json!({"model": "m", "input": [1, 2, 3]}), "input"),
            (json!({"model": "m", "input": [[1, 2]]}), "input"),
            (json!({"model": "m", "input": []}), "input"),
            (json!({"model": "m"}), "input"),
            (
                json!({"model": "m", "input": "x", "dimensions": 0}),
                "dimensions",
            ),
            (
                json!({"model": "m", "input": "x", "encoding_format": "int8"}),
                "encoding_format",
            ),
        ] {
            let e = convert(
                Protocol::OpenAiEmbeddings,
                Protocol::GeminiEmbeddings,
                body.clone(),
            )
            .unwrap_err();
            assert_eq!(
                (e.status().as_u16(), e.param()),
                (400, Some(param)),
                "{body}"
            );
        }
    }

    #[test]
    fn gemini_single_and_batch_to_openai() {
        let conv = convert(
            Protocol::GeminiEmbeddings,
            Protocol::OpenAiEmbeddings,
            json!({"content": {"parts": [{"text": "a"}, {"text": "b"}]}, "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 3}),
        )
        .unwrap();
        assert_eq!(
            conv.body,
            json!({"model": "up-model", "input": ["a\nb"], "encoding_format": "float", "dimensions": 3})
        );
        assert_eq!(conv.path, None);
        let v = conv
            .answer
            .convert(&json!({"data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5, 0.0]}]}))
            .unwrap();
        assert_eq!(v, json!({"embedding": {"values": [0.5, 0.5, 0.0]}}));

        let conv = convert(
            Protocol::GeminiEmbeddings,
            Protocol::OpenAiEmbeddings,
            json!({"requests": [
                {"model": "models/x", "content": {"parts": [{"text": "one"}]}},
                {"model": "models/x", "content": {"parts": [{"text": "two"}]}}
            ]}),
        )
        .unwrap();
        assert_eq!(conv.body["input"], json!(["one", "two"]));
        // Out of order, one as base64: put back in index order.
        let answer = json!({"data": [
            {"index": 1, "embedding": encode_base64_vector(&[2.0])},
            {"index": 0, "embedding": [1.0]}
        ]});
        assert_eq!(
            conv.answer.convert(&answer).unwrap(),
            json!({"embeddings": [{"values": [1.0]}, {"values": [2.0]}]})
        );
        let short = json!({"data": [{"index": 0, "embedding": [1.0]}]});
        assert_eq!(conv.answer.convert(&short).unwrap_err().status(), 502);
    }

    #[test]
    fn gemini_refusals_name_the_field() {
        for (body, param) in [
            (
                json!({"content": {"parts": [{"inlineData": {"mimeType": "image/png", "data": "AA=="}}]}}),
                "content.parts[0]",
            ),
            (json!({"requests": []}), "requests"),
            (
                json!({"requests": [
                    {"content": {"parts": [{"text": "a"}]}, "outputDimensionality": 3},
                    {"content": {"parts": [{"text": "b"}]}, "outputDimensionality": 4}
                ]}),
                "requests[1].outputDimensionality",
            ),
            (json!({"content": {}}), "content"),
        ] {
            let e = convert(
                Protocol::GeminiEmbeddings,
                Protocol::OpenAiEmbeddings,
                body.clone(),
            )
            .unwrap_err();
            assert_eq!(
                (e.status().as_u16(), e.param()),
                (400, Some(param)),
                "{body}"
            );
        }
    }

    #[test]
    fn passthrough_helpers() {
        let mut body = json!({"requests": [{"model": "models/exposed", "content": {"parts": [{"text": "abcdefgh"}]}}]});
        assert!(gemini_batch_set_model(&mut body, "up"));
        assert_eq!(body["requests"][0]["model"], "models/up");
        assert!(!gemini_batch_set_model(&mut body, "up"));
        assert_eq!(gemini_estimated_tokens(&body), 2);
        assert_eq!(
            gemini_estimated_tokens(&json!({"content": {"parts": [{"text": "abc"}]}})),
            1
        );
    }

    #[test]
    fn large_requests_are_split_into_gemini_batches_and_joined() {
        let texts: Vec<String> = (0..250).map(|i| format!("t{i}")).collect();
        let conv = convert(
            Protocol::OpenAiEmbeddings,
            Protocol::GeminiEmbeddings,
            json!({"model": "m", "input": texts}),
        )
        .unwrap();
        let bodies = conv.upstream_bodies();
        let sizes: Vec<usize> = bodies
            .iter()
            .map(|b| b["requests"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(
            bodies[2]["requests"][49]["content"]["parts"][0]["text"],
            "t249"
        );
        let answers = sizes
            .iter()
            .enumerate()
            .map(|(b, n)| {
                let list: Vec<Value> = (0..*n)
                    .map(|i| json!({"values": [(b * 100 + i) as f64]}))
                    .collect();
                json!({"embeddings": list})
            })
            .collect();
        let v = conv.answer.convert(&merge_gemini_answers(answers)).unwrap();
        assert_eq!(v["data"].as_array().unwrap().len(), 250);
        assert_eq!(v["data"][249]["embedding"], json!([249.0]));
        assert_eq!(v["data"][249]["index"], 249);
        let small = convert(
            Protocol::OpenAiEmbeddings,
            Protocol::GeminiEmbeddings,
            json!({"model": "m", "input": "one"}),
        )
        .unwrap();
        assert_eq!(small.upstream_bodies(), vec![small.body.clone()]);
        let merged = merge_gemini_answers(vec![
            json!({"embeddings": [], "usageMetadata": {"promptTokenCount": 2}}),
            json!({"embeddings": [], "usageMetadata": {"promptTokenCount": 3}}),
        ]);
        assert_eq!(merged["usageMetadata"]["promptTokenCount"], 5);
    }

    #[test]
    fn base64_vectors_round_trip() {
        let v = [0.0, 1.5, -2.25];
        assert_eq!(decode_base64_vector(&encode_base64_vector(&v)).unwrap(), v);
        assert!(decode_base64_vector("AAA=").is_err());
    }
}
