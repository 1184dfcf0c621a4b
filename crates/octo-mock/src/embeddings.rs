//! The embeddings routes: OpenAI `POST /v1/embeddings` and Gemini `models/{model}:embedContent` /
//! `:batchEmbedContents`, answered with deterministic vectors.
//!
//! The vector of a text depends on the text and the dimension only, never on the protocol, so a
//! test can compare what a client got through a converted path with the direct answer: component
//! `i` is FNV-1a 64 of the text's bytes followed by `i` as four little-endian bytes, mapped to
//! `[-1, 1]`, and the vector is scaled to unit length. The dimension is the request's
//! (`dimensions`, `outputDimensionality`), else [`DEFAULT_DIMENSIONS`].
//!
//! OpenAI answers honour `encoding_format: "base64"` (little-endian `f32`, as the API sends) and
//! report `usage.prompt_tokens` = Σ (text bytes / 4 + 1); token-id inputs are embedded as their
//! JSON text. Gemini answers carry no usage, as the public API's do; a batch whose
//! `requests[].model` is not the path's `models/{model}`, or of more than 100 requests, is refused
//! with a 400, as the API does.

use base64::Engine as _;
use serde_json::{Value, json};

/// The dimension of a vector when the request names none.
pub(crate) const DEFAULT_DIMENSIONS: usize = 8;
/// The most requests in one Gemini batch (the API's limit).
const MAX_BATCH: usize = 100;
/// The largest dimension the mock makes.
const MAX_DIMENSIONS: u64 = 4096;

/// Which embeddings call a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EmbedRoute {
    /// `POST /v1/embeddings`.
    OpenAi,
    /// Gemini, the model from the path; `batch` for `batchEmbedContents`.
    Gemini { model: String, batch: bool },
}

/// The deterministic unit vector of `text`.
pub(crate) fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let raw: Vec<f64> = (0..dimensions)
        .map(|i| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            let index = u32::try_from(i).unwrap_or(u32::MAX).to_le_bytes();
            for b in text.as_bytes().iter().chain(index.iter()) {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
            #[allow(clippy::cast_precision_loss)] // a pseudo-random value in [0, 1]
            let unit = (h >> 11) as f64 / (1u64 << 53) as f64;
            unit * 2.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::MIN_POSITIVE);
    #[allow(clippy::cast_possible_truncation)] // the wire format is f32
    raw.iter().map(|x| (x / norm) as f32).collect()
}

/// `Err(message)`: the request is invalid (a 400 in the protocol's shape).
pub(crate) fn answer(route: &EmbedRoute, body: &Value) -> Result<Value, String> {
    match route {
        EmbedRoute::OpenAi => openai(body),
        EmbedRoute::Gemini { model, batch } => gemini(model, *batch, body),
    }
}

fn dimensions(v: Option<&Value>) -> Result<usize, String> {
    match v {
        None | Some(Value::Null) => Ok(DEFAULT_DIMENSIONS),
        Some(v) => v
            .as_u64()
            .filter(|d| (1..=MAX_DIMENSIONS).contains(d))
            .and_then(|d| usize::try_from(d).ok())
            .ok_or_else(|| {
                format!("dimensions must be an integer in 1..={MAX_DIMENSIONS}, got {v}")
            }),
    }
}

fn openai(body: &Value) -> Result<Value, String> {
    let texts: Vec<String> = match body.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => {
            if items.iter().all(Value::is_number) {
                vec![Value::Array(items.clone()).to_string()]
            } else {
                items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect()
            }
        }
        _ => return Err("'input' must be a non-empty string or array".to_owned()),
    };
    let dims = dimensions(body.get("dimensions"))?;
    let base64 = match body.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return Err(format!("encoding_format '{other}' is not supported")),
    };
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let v = vector(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens: usize = texts.iter().map(|t| t.len() / 4 + 1).sum();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": body.get("model").cloned().unwrap_or(Value::Null),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

/// The text of a Gemini `content` (text parts joined with a newline).
fn content_text(content: Option<&Value>) -> Result<String, String> {
    let parts = content
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .ok_or("content.parts is required")?;
    Ok(parts
        .iter()
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join("\n"))
}

fn gemini_dimensions(r: &Value) -> Result<usize, String> {
    dimensions(
        r.get("outputDimensionality")
            .or_else(|| r.get("output_dimensionality")),
    )
}

fn gemini(model: &str, batch: bool, body: &Value) -> Result<Value, String> {
    let values = |r: &Value| -> Result<Value, String> {
        Ok(json!({"values": vector(&content_text(r.get("content"))?, gemini_dimensions(r)?)}))
    };
    if !batch {
        return Ok(json!({"embedding": values(body)?}));
    }
    let requests = body
        .get("requests")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or("requests must be a non-empty list")?;
    if requests.len() > MAX_BATCH {
        return Err(format!(
            "* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests can be in one batch"
        ));
    }
    let want = format!("models/{model}");
    let mut out = Vec::with_capacity(requests.len());
    for (i, r) in requests.iter().enumerate() {
        let named = r.get("model").and_then(Value::as_str).unwrap_or_default();
        if named != want {
            return Err(format!(
                "requests[{i}].model is '{named}'; it must match the model of the call, '{want}'"
            ));
        }
        out.push(values(r)?);
    }
    Ok(json!({"embeddings": out}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_vectors() {
        let a = vector("hello", 8);
        assert_eq!(a, vector("hello", 8));
        assert_ne!(a, vector("hellp", 8));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        assert_eq!(vector("x", 3).len(), 3);
    }

    #[test]
    fn openai_and_gemini_give_the_same_vector_for_a_text() {
        let o = openai(&json!({"model": "m", "input": ["hi"], "dimensions": 4})).unwrap();
        let g = gemini(
            "g",
            true,
            &json!({"requests": [{"model": "models/g", "content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 4}]}),
        )
        .unwrap();
        assert_eq!(o["data"][0]["embedding"], g["embeddings"][0]["values"]);
        assert_eq!(o["usage"]["prompt_tokens"], 1);
        assert!(g.get("usageMetadata").is_none());
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let o = openai(&json!({"input": "hi", "encoding_format": "base64"})).unwrap();
        let b = base64::engine::general_purpose::STANDARD
            .decode(o["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(b.len(), DEFAULT_DIMENSIONS * 4);
        assert_eq!(
            f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            vector("hi", 8)[0]
        );
    }

    #[test]
    fn gemini_batch_models_must_match_the_path() {
        let body =
            json!({"requests": [{"model": "models/other", "content": {"parts": [{"text": "x"}]}}]});
        assert!(gemini("g", true, &body).unwrap_err().contains("must match"));
        let many: Vec<Value> = (0..101)
            .map(|_| json!({"model": "models/g", "content": {"parts": [{"text": "x"}]}}))
            .collect();
        assert!(
            gemini("g", true, &json!({"requests": many}))
                .unwrap_err()
                .contains("at most 100")
        );
        let single = gemini("g", false, &json!({"content": {"parts": [{"text": "x"}]}})).unwrap();
        assert_eq!(single["embedding"]["values"].as_array().unwrap().len(), 8);
    }
}
