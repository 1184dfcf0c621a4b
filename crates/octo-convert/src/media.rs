//! Images and files: data URIs, media types, and the bytes behind a declared type.

use crate::canonical::Media;
use crate::ids::base64_decode;

/// Reads `data:<type>[;param…];base64,<data>` into `(media type, base64 data)`.
///
/// Parameters such as `;name=photo.png;` are skipped; the media type is normalised.
pub(crate) fn parse_data_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mut fields = meta.split(';');
    let media_type = fields.next().unwrap_or_default().trim();
    if !fields.any(|f| f.trim().eq_ignore_ascii_case("base64")) {
        return None;
    }
    let media_type = if media_type.is_empty() {
        "application/octet-stream"
    } else {
        media_type
    };
    Some((normalize_media_type(media_type), data.trim().to_owned()))
}

/// A URL (kept) or a data URI (decoded into base64 form).
pub(crate) fn media_from_url(url: &str) -> Media {
    match parse_data_uri(url) {
        Some((media_type, data)) => Media::Base64 { media_type, data },
        None => Media::Url {
            url: url.to_owned(),
            media_type: None,
        },
    }
}

/// `data:<type>;base64,<data>`.
pub(crate) fn data_uri(media_type: &str, data: &str) -> String {
    format!("data:{media_type};base64,{data}")
}

/// The media as a URL a browser-style client understands (data URI for inline bytes).
pub(crate) fn media_url(media: &Media) -> String {
    match media {
        Media::Url { url, .. } => url.clone(),
        Media::Base64 { media_type, data } => data_uri(media_type, data),
    }
}

/// Base64 in the standard alphabet with padding. Gemini accepts (and its Python SDK sends) the
/// URL-safe alphabet for `inlineData`; the other protocols' APIs want standard base64.
pub(crate) fn standard_base64(data: &str) -> String {
    if !data.contains(['-', '_']) {
        return data.to_owned();
    }
    url_safe_to_standard(data)
}

/// URL-safe base64 (`-` and `_`, padding optional) in the standard alphabet, padded.
pub(crate) fn url_safe_to_standard(data: &str) -> String {
    let mut out: String = data
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    let len = out.chars().filter(|c| !c.is_whitespace()).count();
    out.extend(std::iter::repeat_n('=', (4 - len % 4) % 4));
    out
}

/// Lower case, `image/jpg` → `image/jpeg`.
pub(crate) fn normalize_media_type(t: &str) -> String {
    let t = t.trim().to_ascii_lowercase();
    match t.as_str() {
        "image/jpg" | "image/pjpeg" => "image/jpeg".to_owned(),
        _ => t,
    }
}

/// The image type the base64 `data` really holds, from its first bytes.
pub(crate) fn sniff_image(data: &str) -> Option<&'static str> {
    let head: String = data
        .chars()
        .filter(|c| !c.is_whitespace())
        .take_while(char::is_ascii)
        .take(16)
        .collect();
    let bytes = base64_decode(&head[..head.len() - head.len() % 4])?;
    match bytes.as_slice() {
        [0x89, b'P', b'N', b'G', ..] => Some("image/png"),
        [0xFF, 0xD8, 0xFF, ..] => Some("image/jpeg"),
        [b'G', b'I', b'F', b'8', ..] => Some("image/gif"),
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => Some("image/webp"),
        _ => None,
    }
}

/// A media type guessed from a URL's extension.
pub(crate) fn guess_from_url(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_safe_base64_becomes_standard() {
        assert_eq!(standard_base64("ab-_cd"), "ab+/cd==");
        assert_eq!(standard_base64("ab-_"), "ab+/");
        assert_eq!(standard_base64("ab+/cd=="), "ab+/cd==");
        assert_eq!(standard_base64("abc"), "abc");
    }

    #[test]
    fn data_uris_with_params_and_jpg() {
        assert_eq!(
            parse_data_uri("data:image/jpg;name=a.jpg;base64,/9j/4AAQ"),
            Some(("image/jpeg".into(), "/9j/4AAQ".into()))
        );
        assert_eq!(
            parse_data_uri("data:application/pdf;base64,JVBERi0x"),
            Some(("application/pdf".into(), "JVBERi0x".into()))
        );
        assert_eq!(parse_data_uri("data:text/plain,hello"), None);
        assert_eq!(parse_data_uri("https://x/y.png"), None);
    }

    #[test]
    fn sniffing_finds_the_real_type() {
        assert_eq!(sniff_image("iVBORw0KGgoAAAANSUhEUg"), Some("image/png"));
        assert_eq!(sniff_image("/9j/4AAQSkZJRg"), Some("image/jpeg"));
        assert_eq!(sniff_image("R0lGODlhAQABAIAAAP"), Some("image/gif"));
        assert_eq!(sniff_image("UklGRiQAAABXRUJQVlA4"), Some("image/webp"));
        assert_eq!(sniff_image("aGVsbG8="), None);
        assert_eq!(sniff_image(""), None);
    }

    #[test]
    fn extensions() {
        assert_eq!(guess_from_url("https://h/a/b.JPG?x=1"), Some("image/jpeg"));
        assert_eq!(guess_from_url("https://h/a/b"), None);
    }
}
