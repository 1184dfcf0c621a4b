//! The `octollm-server` command line: config errors fail at startup naming the file, the key path
//! and the fix; `--check` validates; the built-in demo config is valid.

use std::process::Command;

fn server() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_octollm-server"));
    c.env("OCTOLLM_LOG", "error").env_remove("OCTOLLM_LISTEN");
    c
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("octollm-cli-{}-{name}.yaml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn unknown_keys_fail_at_startup_with_file_path_and_fix() {
    let path = write_config(
        "bad",
        "backends:\n  oa:\n    base_url: http://127.0.0.1:1\n    protocol: openai_chat\n    timeouts: {conect: 5s}\n",
    );
    let out = server().arg("--config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("backends.oa.timeouts"), "{err}");
    assert!(
        err.contains("unknown field `conect`, expected one of"),
        "{err}"
    );
}

#[test]
fn unknown_backends_and_bad_durations_are_all_reported() {
    let path = write_config(
        "semantic",
        "backends:\n  oa: {base_url: 'http://127.0.0.1:1', protocol: openai_chat, timeouts: {idle: soon}}\nmodels:\n  m: {targets: [{backend: ob}]}\n",
    );
    let out = server().arg("--config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("models.m.targets[0].backend"), "{err}");
    assert!(err.contains("defined backends: oa"), "{err}");
    assert!(err.contains("backends.oa.timeouts.idle"), "{err}");
}

#[test]
fn a_bad_conversion_reasoning_value_fails_at_startup_with_the_choices() {
    let path = write_config(
        "reasoning",
        "backends:\n  oa:\n    base_url: http://127.0.0.1:1\n    protocol: openai_chat\n    conversion: {reasoning: strip}\n",
    );
    let out = server().arg("--config").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("backends.oa.conversion.reasoning"), "{err}");
    assert!(
        err.contains("unknown variant `strip`, expected `pass` or `drop`"),
        "{err}"
    );
    // The valid values load.
    for value in ["pass", "drop"] {
        let path = write_config(
            &format!("reasoning-{value}"),
            &format!(
                "backends:\n  oa:\n    base_url: http://127.0.0.1:1\n    protocol: openai_chat\n    conversion: {{reasoning: {value}}}\n"
            ),
        );
        let out = server()
            .arg("--check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_missing_file_is_named() {
    let out = server()
        .args(["--config", "/nonexistent/octollm.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/octollm.yaml"));
}

#[test]
fn check_validates_without_serving() {
    let path = write_config(
        "good",
        "backends:\n  oa: {base_url: 'http://127.0.0.1:1', protocol: openai_chat}\nmodels:\n  m: {targets: [{backend: oa}]}\n",
    );
    let out = server()
        .arg("--config")
        .arg(&path)
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (1 backends, 1 models)"));
}

#[test]
#[cfg(feature = "demo")]
fn the_demo_config_is_valid() {
    let out = server().args(["--demo", "--check"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[cfg(not(feature = "demo"))]
fn without_the_demo_feature_demo_says_how_to_get_it() {
    let out = server().args(["--demo", "--check"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("built without the `demo` cargo feature") && err.contains("--features demo"),
        "{err}"
    );
}
