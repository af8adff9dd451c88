//! Real `forcelink serve` processes on the test's database: for multi-instance and crash tests.
//! Secrets reach the child through `FORCELINK_` variables, never through files.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use forcelink::config::Config;

use crate::harness::TestApp;

/// A running forcelink process; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct ForcelinkProcess {
    pub child: Child,
    pub url: String,
    _config_dir: tempfile::TempDir,
}

impl ForcelinkProcess {
    /// `kill -9`: no chance to finish anything.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ForcelinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `forcelink --config FILE ARGS…` for this config: the file holds it with secrets redacted,
/// and the environment supplies the secrets. The directory must outlive the command.
pub fn command_for(config: &Config, args: &[&str]) -> (Command, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("forcelink.toml");
    std::fs::write(&file, toml::to_string(config).unwrap()).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_forcelink"));
    command
        .args(["--config", file.to_str().unwrap()])
        .args(args)
        .env_remove("FORCELINK_CONFIG")
        .env_remove("FORCELINK_LOG");
    // Secrets are redacted in the file; the environment overrides them.
    if let Some(secret) = &config.salesforce.client_secret {
        command.env("FORCELINK_SALESFORCE__CLIENT_SECRET", &secret.0);
    }
    if let Some(key) = &config.admin.api_key {
        command.env("FORCELINK_ADMIN__API_KEY", &key.0);
    }
    for (id, key) in &config.keys.ring {
        command.env(
            format!("FORCELINK_KEYS__RING__{}", id.to_ascii_uppercase()),
            &key.0,
        );
    }
    (command, dir)
}

impl TestApp {
    /// Runs the forcelink CLI on this app's config and database; returns (success, stdout,
    /// stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let (mut command, _dir) = command_for(&self.config, args);
        let output = command.output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Starts `forcelink serve` on 127.0.0.1:0 with this app's config, changed by `change`.
    pub fn spawn_process(
        &self,
        instance: &str,
        change: impl FnOnce(&mut Config),
    ) -> ForcelinkProcess {
        self.spawn_process_logging(instance, change, None)
    }

    /// Like `spawn_process`, with every log line at `trace` written to `log_file`.
    pub fn spawn_process_logging(
        &self,
        instance: &str,
        change: impl FnOnce(&mut Config),
        log_file: Option<&std::path::Path>,
    ) -> ForcelinkProcess {
        let mut config = self.config.clone();
        config.server.listen = "127.0.0.1:0".into();
        config.server.instance_id = instance.to_string();
        change(&mut config);
        let (mut command, dir) = command_for(&config, &["serve"]);
        command
            .env(
                "FORCELINK_LOG",
                if log_file.is_some() { "trace" } else { "warn" },
            )
            .stdout(Stdio::piped())
            .stderr(match log_file {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::inherit(),
            });
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("forcelink serving on ") {
                        break url.trim().to_string();
                    }
                }
                _ => panic!("forcelink {instance} exited before serving"),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ForcelinkProcess {
            child,
            url,
            _config_dir: dir,
        }
    }

    /// Stops the in-process server so only child processes serve the database.
    pub async fn stop_in_process_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await.unwrap();
        }
    }
}

/// POST /v1/connections/{org}/token on a given forcelink URL, with an agent key.
pub async fn token_at(
    http: &reqwest::Client,
    url: &str,
    agent_key: &str,
    org_id: &str,
    stale: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut request = http
        .post(format!("{url}/v1/connections/{org_id}/token"))
        .bearer_auth(agent_key);
    if let Some(stale) = stale {
        request = request.json(&serde_json::json!({ "stale_token": stale }));
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (
                status,
                response.json().await.unwrap_or(serde_json::Value::Null),
            )
        }
        Err(error) => (0, serde_json::Value::String(error.to_string())),
    }
}
