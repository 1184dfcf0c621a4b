//! The config loader never panics on any file: arbitrary text is parsed, interpolated (every
//! `${VAR}` is set) and validated; a config it accepts is built into the engine graph, which
//! either succeeds or fails with a config error naming the key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| (name.len() % 2 == 0).then(|| format!("value-of-{name}"));
    let Ok(config) = octo_server::config::parse(text, "fuzz.yaml", &env) else {
        return;
    };
    match octo_server::build(&config, "fuzz.yaml") {
        Ok(_) => {}
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
