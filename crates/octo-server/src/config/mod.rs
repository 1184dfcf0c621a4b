//! The YAML configuration: [`schema`] (the typed keys), [`load`](mod@load) (file, `${ENV}`
//! interpolation, deserialization) and [`validate`] (cross-field checks).
//!
//! Loading is strict. Unknown keys, unknown backends, bad durations, bad URLs and missing
//! environment variables all fail at startup with the file, the key's path (`backends.oa.timeouts`)
//! and what to write instead. Nothing is silently ignored, and every value reaches the gateway
//! builder already typed.
//!
//! The schema here is the subset this release implements; see `docs/config.md`.

pub mod cache;
mod de;
mod duration;
mod interpolate;
pub mod limits;
pub mod load;
pub mod redis;
pub mod schema;
pub mod validate;

pub use cache::{CacheConfig, CacheStoreKind, ModerationConfig, ModerationOn, ModerationOnError};
pub use duration::parse_duration;
pub use load::{ConfigError, document, from_document, load, load_document, parse};
pub use redis::{RedisConfig, RedisOnError};
pub use schema::*;

#[cfg(test)]
mod tests {
    use super::*;
    use octo_engines::endpoint::HttpVersion;

    fn env(name: &str) -> Option<String> {
        (name == "OPENAI_KEY").then(|| "sk-from-env".to_owned())
    }

    const GOOD: &str = r#"
listen: "127.0.0.1:0"
backends:
  oa:
    base_url: "http://127.0.0.1:9001"
    protocol: openai_chat
    api_keys: ["${OPENAI_KEY}"]
    headers: {X-Extra: "v"}
    paths: {openai_chat: "/v1/chat/completions"}
    timeouts: {connect: 5s, first_byte: 60s, idle: 60s, total: 600s}
models:
  gpt-4o-mini:
    targets:
      - {backend: oa, model: upstream-model-name}
"#;

    #[test]
    fn the_issue_example_loads() {
        let c = parse(GOOD, "good.yaml", &env).unwrap();
        assert_eq!(c.backends["oa"].keys(), vec!["sk-from-env"]);
        assert_eq!(
            c.models["gpt-4o-mini"].targets[0].model.as_deref(),
            Some("upstream-model-name")
        );
    }

    fn err(text: &str) -> String {
        parse(text, "bad.yaml", &env).unwrap_err().to_string()
    }

    #[test]
    fn storage_buffer_and_write_timeout_are_set_and_checked() {
        let c = parse(
            &format!("{GOOD}storage: {{buffer: 250000, write_timeout: 30s}}\n"),
            "good.yaml",
            &env,
        )
        .unwrap();
        let Storage::On(s) = &c.storage else {
            panic!("storage is on")
        };
        assert_eq!(s.buffer, 250_000);
        assert_eq!(s.write_timeout, std::time::Duration::from_secs(30));
        let Storage::On(d) = &parse(GOOD, "good.yaml", &env).unwrap().storage else {
            panic!("storage is on by default")
        };
        assert_eq!(d.buffer, 100_000);
        assert_eq!(d.write_timeout, std::time::Duration::from_secs(10));
        for (bad, key, fix) in [
            ("buffer: 0", "storage.buffer", "from 1 to 10000000"),
            ("buffer: 20000000", "storage.buffer", "from 1 to 10000000"),
            (
                "write_timeout: 10ms",
                "storage.write_timeout",
                "at least `100ms`",
            ),
        ] {
            let e = err(&format!("{GOOD}storage: {{{bad}}}\n"));
            assert!(
                e.contains("bad.yaml") && e.contains(key) && e.contains(fix),
                "{e}"
            );
        }
        let e = err(&format!("{GOOD}storage: {{buffer: lots}}\n"));
        assert!(e.contains("storage.buffer"), "{e}");
    }

    #[test]
    fn unknown_keys_name_their_path_and_the_choices() {
        let e = err(&GOOD.replace("first_byte: 60s", "first_bite: 60s"));
        assert!(e.contains("bad.yaml"), "{e}");
        assert!(e.contains("backends.oa.timeouts"), "{e}");
        assert!(e.contains("unknown field `first_bite`"), "{e}");
        assert!(e.contains("first_byte"), "{e}");
    }

    #[test]
    fn semantic_errors_are_all_reported() {
        let e = err(&GOOD
            .replace("backend: oa", "backend: ob")
            .replace("connect: 5s", "connect: 5 sec")
            .replace("protocol: openai_chat", "protocol: openai"));
        assert!(
            e.contains(
                "models.gpt-4o-mini.targets[0].backend`: unknown backend `ob`; defined backends: oa"
            ),
            "{e}"
        );
        assert!(e.contains("backends.oa.timeouts.connect"), "{e}");
        assert!(e.contains("unknown protocol `openai`"), "{e}");
    }

    #[test]
    fn missing_env_vars_fail_with_the_key_path() {
        let e = err(&GOOD.replace("${OPENAI_KEY}", "${MISSING_KEY}"));
        assert!(e.contains("backends.oa.api_keys[0]"), "{e}");
        assert!(e.contains("`MISSING_KEY` is not set"), "{e}");
    }

    #[test]
    fn base_url_with_a_path_is_refused() {
        let e = err(&GOOD.replace("http://127.0.0.1:9001", "http://127.0.0.1:9001/v1"));
        assert!(e.contains("backends.oa.base_url"), "{e}");
    }

    const FULL: &str = r#"
listen: "127.0.0.1:8080"
backends:
  oa:
    base_url: "http://127.0.0.1:9001"
    protocol: [openai_chat, openai_responses]
    api_keys: ["k1", "k2"]
    headers: {}
    paths: {}
    timeouts: {connect: 5s, first_byte: 60s, idle: 60s, total: 600s}
    request_rewrites: {set_keys: {b: 1, a: 2}, set_keys_by_expr: {}, remove_keys: []}
    response_rewrites: {}
    stream_chunk_rewrites: {}
    circuit_breaker: {failures: 3, cooldown: 10s, max_cooldown: 2m}
    key_cooldown: 30s
models:
  gpt-4o-mini:
    access: public
    strategy: weighted_round_robin
    targets:
      - {backend: oa, model: upstream-name, weight: 1, priority: 0}
    retry: {max_attempts: 3, deadline: 30s}
    sticky: 5m
    max_concurrency: 100
    rules:
      - name: no-stream
        match: "stream == true"
        deny: {status: 403, message: "streaming is not allowed"}
      - name: big
        match: "promptTextLen > 100000"
        route: [{backend: oa, model: big-model, weight: 1}]
  private-model:
    access: private
    targets: [{backend: oa}]
orgs:
  acme:
    api_keys:
      alice: "sk-acme-alice"
      bob: "sha256:0000000000000000000000000000000000000000000000000000000000000000"
      carol: {key: "sk-carol", expires: "2030-01-01T00:00:00Z", models: [gpt-4o-mini]}
    models:
      private-model: null
"#;

    #[test]
    fn the_full_schema_loads_and_keeps_rewrite_order() {
        let c = parse(FULL, "full.yaml", &env).unwrap();
        let m = &c.models["gpt-4o-mini"];
        assert_eq!(m.strategy, StrategyConfig::WeightedRoundRobin);
        assert_eq!(m.rules.len(), 2);
        assert_eq!(c.models["private-model"].access, AccessConfig::Private);
        assert!(c.orgs["acme"].models.contains_key("private-model"));
        let rw = c.backends["oa"].request_rewrites.as_ref().unwrap();
        let keys: Vec<_> = rw.set_keys.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a"]);
    }

    #[test]
    fn bad_rules_weights_and_references_fail_with_paths() {
        let e = err(&FULL.replace("weight: 1, priority: 0", "weight: -1, priority: 0"));
        assert!(e.contains("models.gpt-4o-mini.targets[0].weight"), "{e}");
        let e = err(&FULL.replace("status: 403", "status: 200").replace(
            "backend: oa, model: big-model",
            "backend: nope, model: big-model",
        ));
        assert!(e.contains("models.gpt-4o-mini.rules[0].deny.status"), "{e}");
        assert!(
            e.contains("models.gpt-4o-mini.rules[1].route[0].backend"),
            "{e}"
        );
        let e = err(&FULL.replace("strategy: weighted_round_robin", "strategy: fastest"));
        assert!(
            e.contains("models.gpt-4o-mini.strategy") && e.contains("lowest_latency"),
            "{e}"
        );
        let e = err(&FULL.replace("private-model: null", "ghost-model: null"));
        assert!(e.contains("orgs.acme.models.ghost-model"), "{e}");
        let e = err(&FULL.replace("sticky: 5m", "sticky: forever"));
        assert!(e.contains("models.gpt-4o-mini.sticky"), "{e}");
    }

    #[test]
    fn breaker_defaults_match_a_backend_without_the_section() {
        // `circuit_breaker: {failures: 3}` must not change the cooldowns a backend without the
        // section gets.
        let engine = octo_engines::breaker::BreakerConfig::default();
        assert_eq!(schema::default_breaker_cooldown(), engine.base_cooldown);
        assert_eq!(schema::default_breaker_max_cooldown(), engine.max_cooldown);
        assert_eq!(schema::default_breaker_failures(), engine.failure_threshold);
    }

    #[test]
    fn non_public_models_need_orgs() {
        let internal = GOOD.replace("  gpt-4o-mini:\n", "  gpt-4o-mini:\n    access: internal\n");
        let e = err(&internal);
        assert!(e.contains("models.gpt-4o-mini.access"), "{e}");
        assert!(e.contains("no `orgs`"), "{e}");
        let with_org = format!("{internal}orgs:\n  acme: {{api_keys: {{a: sk-a}}}}\n");
        parse(&with_org, "ok.yaml", &env).unwrap();
    }

    #[test]
    fn conversion_reasoning_parses_and_bad_values_name_the_choices() {
        let with = |v: &str| {
            GOOD.replace(
                "    api_keys: [\"${OPENAI_KEY}\"]\n",
                &format!(
                    "    api_keys: [\"${{OPENAI_KEY}}\"]\n    conversion: {{reasoning: {v}}}\n"
                ),
            )
        };
        let c = parse(&with("drop"), "good.yaml", &env).unwrap();
        let conv = c.backends["oa"].conversion.as_ref().unwrap();
        assert_eq!(conv.reasoning, Some(ReasoningPolicy::Drop));
        let c = parse(&with("pass"), "good.yaml", &env).unwrap();
        let conv = c.backends["oa"].conversion.as_ref().unwrap();
        assert_eq!(conv.reasoning, Some(ReasoningPolicy::Pass));
        let c = parse(GOOD, "good.yaml", &env).unwrap();
        assert!(c.backends["oa"].conversion.is_none());
        let e = err(&with("strip"));
        assert!(e.contains("bad.yaml"), "{e}");
        assert!(e.contains("backends.oa.conversion.reasoning"), "{e}");
        assert!(e.contains("unknown variant `strip`"), "{e}");
        assert!(e.contains("`pass`") && e.contains("`drop`"), "{e}");
    }

    #[test]
    fn http_version_h2c_is_parsed_and_checked() {
        let c = parse(GOOD, "good.yaml", &env).unwrap();
        assert_eq!(c.backends["oa"].http_version, HttpVersion::Auto);
        let h2c = GOOD.replace(
            "    protocol: openai_chat\n",
            "    protocol: openai_chat\n    http_version: h2c\n",
        );
        let c = parse(&h2c, "h2c.yaml", &env).unwrap();
        assert_eq!(c.backends["oa"].http_version, HttpVersion::H2c);
        let auto = h2c.replace("http_version: h2c", "http_version: auto");
        let c = parse(&auto, "auto.yaml", &env).unwrap();
        assert_eq!(c.backends["oa"].http_version, HttpVersion::Auto);

        let e = err(&h2c.replace("http_version: h2c", "http_version: h2"));
        assert!(e.contains("bad.yaml"), "{e}");
        assert!(e.contains("at `backends.oa.http_version`"), "{e}");
        assert!(e.contains("unknown HTTP version setting `h2`"), "{e}");
        assert!(e.contains("use `h2c`"), "{e}");

        let e = err(&h2c.replace("http://127.0.0.1:9001", "https://127.0.0.1:9001"));
        assert!(e.contains("at `backends.oa.http_version`"), "{e}");
        assert!(e.contains("needs an `http://` base_url"), "{e}");
        assert!(e.contains("remove `http_version`"), "{e}");
    }

    #[test]
    fn transport_is_parsed_and_checked() {
        use octo_engines::endpoint::Transport;
        let c = parse(GOOD, "good.yaml", &env).unwrap();
        assert_eq!(c.backends["oa"].transport, Transport::Auto);
        let with = |t: &str| {
            GOOD.replace(
                "    protocol: openai_chat\n",
                &format!("    protocol: openai_chat\n    transport: {t}\n"),
            )
        };
        for (name, t) in [
            ("auto", Transport::Auto),
            ("hyper", Transport::Hyper),
            ("reqwest", Transport::Reqwest),
        ] {
            let c = parse(&with(name), "t.yaml", &env).unwrap();
            assert_eq!(c.backends["oa"].transport, t);
        }
        let e = err(&with("curl"));
        assert!(e.contains("at `backends.oa.transport`"), "{e}");
        assert!(e.contains("unknown transport `curl`"), "{e}");
        let e = err(&with("hyper").replace("http://127.0.0.1:9001", "https://127.0.0.1:9001"));
        assert!(e.contains("at `backends.oa.transport`"), "{e}");
        assert!(e.contains("plain http:// upstreams only"), "{e}");
        let tls = with("reqwest").replace("http://127.0.0.1:9001", "https://127.0.0.1:9001");
        assert!(parse(&tls, "t.yaml", &env).is_ok());
    }

    #[test]
    fn yaml_syntax_errors_have_a_location() {
        let e = err("backends: [\n");
        assert!(e.contains("not valid YAML"), "{e}");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn typed_values_fail_where_they_are_written() {
        let e = err(&GOOD.replace(
            "headers: {X-Extra: \"v\"}",
            "headers: {\"bad name\": \"v\"}",
        ));
        assert!(e.contains("at `backends.oa.headers.bad name`"), "{e}");
        assert!(e.contains("not a valid HTTP header"), "{e}");
        let e = err(&GOOD.replace("paths: {openai_chat:", "paths: {openai_chats:"));
        assert!(e.contains("backends.oa.paths"), "{e}");
        assert!(e.contains("`openai_chats` is not a protocol"), "{e}");
        let e = err(&GOOD.replace("listen: \"127.0.0.1:0\"", "listen: \"localhost\""));
        assert!(e.contains("at `listen`"), "{e}");
        assert!(e.contains("write e.g. `127.0.0.1:8080`"), "{e}");
        let rule = "    rules:\n      - {name: h, set_headers: {\"x y\": v}}\n";
        let e = err(&format!("{GOOD}{rule}"));
        assert!(
            e.contains("models.gpt-4o-mini.rules[0].set_headers.x y"),
            "{e}"
        );
    }

    #[test]
    fn durations_are_typed_and_a_bare_number_is_seconds() {
        let c = parse(
            &GOOD.replace("connect: 5s", "connect: 7"),
            "good.yaml",
            &env,
        )
        .unwrap();
        assert_eq!(
            c.backends["oa"].timeouts.connect,
            Some(std::time::Duration::from_secs(7))
        );
        assert_eq!(
            c.backends["oa"].timeouts.total,
            Some(std::time::Duration::from_secs(600))
        );
        assert_eq!(
            c.limits.stream_keep_alive,
            std::time::Duration::from_secs(15)
        );
        let e = err(&GOOD.replace("connect: 5s", "connect: 0"));
        assert!(e.contains("backends.oa.timeouts.connect"), "{e}");
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn a_missing_protocol_is_reported_once_with_the_choices() {
        let e = err(&GOOD.replace("    protocol: openai_chat\n", ""));
        assert_eq!(e.matches("backends.oa.protocol`").count(), 1, "{e}");
        assert!(e.contains("list at least one protocol"), "{e}");
    }
}
