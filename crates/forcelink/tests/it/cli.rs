//! The binary's command line: start-up failures say how to fix them; the demo works.

use std::process::Command;

use crate::schema::{applied_version, store_one_migration_behind};

/// A config file in `dir` with what `serve` needs (client id, admin key, a key ring), then
/// `extra`.
fn config_file(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let file = dir.join("forcelink.toml");
    let key = forcelink_core::KeyRing::generate_key()
        .into_string()
        .unwrap();
    std::fs::write(
        &file,
        format!(
            "[salesforce]\nclient_id = \"abc\"\n[admin]\napi_key = \"an-admin-key-that-is-long-enough\"\n[keys]\nactive = \"k1\"\n[keys.ring]\nk1 = \"{key}\"\n{extra}"
        ),
    )
    .unwrap();
    file
}

fn forcelink() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_forcelink"));
    command.env_remove("FORCELINK_CONFIG");
    command
}

#[test]
fn serve_without_client_id_fails_at_start_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let output = forcelink()
        .current_dir(dir.path())
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("salesforce.client_id is not set"),
        "{stderr}"
    );
    assert!(
        stderr.contains("FORCELINK_SALESFORCE__CLIENT_ID"),
        "{stderr}"
    );
}

#[test]
fn config_check_refuses_unknown_keys_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("forcelink.toml");
    std::fs::write(
        &file,
        "[salesforce]\nclient_id = \"abc\"\nclient_sekret = \"x\"\n",
    )
    .unwrap();
    let output = forcelink()
        .args(["--config", file.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("client_sekret"));

    let key = forcelink_core::KeyRing::generate_key()
        .into_string()
        .unwrap();
    std::fs::write(
        &file,
        format!(
            "[salesforce]\nclient_id = \"abc\"\nclient_secret = \"the-client-secret\"\n[admin]\napi_key = \"an-admin-key-that-is-long-enough\"\n[keys]\nactive = \"k1\"\n[keys.ring]\nk1 = \"{key}\"\n"
        ),
    )
    .unwrap();
    let output = forcelink()
        .args(["--config", file.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("[redacted]"));
    for secret in [
        "the-client-secret",
        "an-admin-key-that-is-long-enough",
        key.as_str(),
    ] {
        assert!(!stdout.contains(secret), "{stdout}");
    }
}

#[test]
fn bad_key_in_the_ring_fails_with_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("forcelink.toml");
    std::fs::write(
        &file,
        "[salesforce]\nclient_id = \"abc\"\n[admin]\napi_key = \"an-admin-key-that-is-long-enough\"\n[keys]\nactive = \"k1\"\n[keys.ring]\nk1 = \"c2hvcnQ=\"\n",
    )
    .unwrap();
    let output = forcelink()
        .args(["--config", file.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("forcelink keys generate"));
}

#[test]
fn demo_once_connects_three_orgs_and_exits_zero() {
    let output = forcelink().args(["demo", "--once"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches("  connected ").count(), 3, "{stdout}");
    assert!(stdout.contains("demo checks passed"), "{stdout}");
    assert!(stdout.contains("  forcelink:        https://"), "{stdout}");
    assert!(
        stdout.contains("--cacert") && stdout.contains("-X POST"),
        "{stdout}"
    );
    assert!(stdout.contains("REQUESTS_CA_BUNDLE="), "{stdout}");
    assert!(stdout.contains("/v1/proxy/"), "{stdout}");
    assert!(stdout.contains("the proxy works"), "{stdout}");
}

#[test]
fn a_heartbeat_interval_too_close_to_the_idle_ttl_fails_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "[heartbeat]\ninterval_hours = 600\n");
    let output = forcelink()
        .args(["--config", file.to_str().unwrap(), "config", "check"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not safely below the refresh-token idle TTL")
            && stderr.contains("at most 240"),
        "{stderr}"
    );
}

/// CLI commands never create or migrate a store (only `serve` does): on a missing SQLite file
/// and on a schema one migration behind they fail, saying to start `serve`, and leave it.
#[test]
fn cli_commands_neither_create_nor_migrate_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forcelink.db");
    let file = config_file(
        dir.path(),
        &format!("[store]\nurl = \"sqlite:{}\"\n", path.display()),
    );
    let run = |args: &[&str]| {
        let output = forcelink()
            .args(["--config", file.to_str().unwrap()])
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (ok, stderr) = run(&["connections", "list"]);
    assert!(!ok && stderr.contains("no SQLite store"), "{stderr}");
    assert!(!path.exists(), "the CLI created {}", path.display());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let behind = runtime.block_on(store_one_migration_behind(&path));
    for args in [
        &["agents", "list"][..],
        &["webhooks", "retry", "--endpoint", "whe_x"][..],
    ] {
        let (ok, stderr) = run(args);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            stderr.contains(&format!("schema is at version {behind}"))
                && stderr.contains("start `forcelink serve`"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        runtime.block_on(applied_version(&path)),
        behind,
        "a CLI command migrated the store"
    );
}
