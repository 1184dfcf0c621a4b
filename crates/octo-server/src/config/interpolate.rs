//! `${VAR}` and `${VAR:-default}` in config string values.
//!
//! Interpolation runs on parsed string values, never on the raw file, so an environment value can
//! not change the YAML structure (a key containing `"` or a newline stays one string).

/// Replaces every `${NAME}` / `${NAME:-default}` in `text` using `lookup`.
pub(crate) fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    if !text.contains("${") {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{text}` has an unclosed `${{`; write `${{NAME}}`"))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "`${{{inner}}}` is not a valid variable reference; names use A-Z, 0-9 and _"
            ));
        }
        match lookup(name).or_else(|| default.map(str::to_owned)) {
            Some(v) => out.push_str(&v),
            None => {
                return Err(format!(
                    "environment variable `{name}` is not set; export it, or write `${{{name}:-default}}`"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "sk-1".to_owned())
    }

    #[test]
    fn substitutes_and_defaults() {
        assert_eq!(interpolate("${KEY}", &env).unwrap(), "sk-1");
        assert_eq!(interpolate("a-${KEY}-b", &env).unwrap(), "a-sk-1-b");
        assert_eq!(interpolate("${NOPE:-x}", &env).unwrap(), "x");
        assert_eq!(interpolate("plain", &env).unwrap(), "plain");
    }

    #[test]
    fn missing_variables_name_the_fix() {
        let e = interpolate("${NOPE}", &env).unwrap_err();
        assert!(e.contains("`NOPE` is not set"), "{e}");
        assert!(interpolate("${KEY", &env).is_err());
        assert!(interpolate("${A B}", &env).is_err());
    }
}
