//! sfsim as a separate process, so that the benchmark process's CPU time is forcelink's alone:
//! spawns the `sfsim` binary that sits next to this executable, reads the URLs it prints, and
//! drives it through its HTTP control API (`docs/sfsim.md`). The child is killed when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::{Value, json};

/// sfsim's counters (totals), as its control API reports them.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct Counters {
    pub code_exchanges: u64,
    pub refresh_grants: u64,
    pub refresh_failures: u64,
    pub reuse_detections: u64,
    pub concurrent_rejections: u64,
}

impl Counters {
    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            code_exchanges: self.code_exchanges - before.code_exchanges,
            refresh_grants: self.refresh_grants - before.refresh_grants,
            refresh_failures: self.refresh_failures - before.refresh_failures,
            reuse_detections: self.reuse_detections - before.reuse_detections,
            concurrent_rejections: self.concurrent_rejections - before.concurrent_rejections,
        }
    }
}

/// A running `sfsim` child process.
#[derive(Debug)]
pub struct SimProcess {
    child: Child,
    /// The production login host; the control API hangs off it under `/sfsim/`.
    pub login_url: String,
    http: reqwest::Client,
}

impl SimProcess {
    pub async fn spawn() -> anyhow::Result<SimProcess> {
        let exe = std::env::current_exe()
            .context("cannot find this executable")?
            .with_file_name("sfsim");
        if !exe.exists() {
            bail!(
                "{} not found: build the simulator next to forcelink with `cargo build --release -p sfsim`",
                exe.display()
            );
        }
        let mut child = Command::new(&exe)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        let stdout = child
            .stdout
            .take()
            .context("sfsim's stdout is not captured")?;
        let found = tokio::task::spawn_blocking(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut login = None;
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("production login host:") {
                    login = Some(url.trim().to_string());
                }
                if line.starts_with("control API:") {
                    break;
                }
            }
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || for _ in lines {});
            login
        })
        .await
        .context("reading sfsim's output failed")?;
        let Some(login_url) = found else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("sfsim exited or printed no production login host");
        };
        let http = reqwest::Client::builder()
            .build()
            .context("cannot build an HTTP client")?;
        Ok(SimProcess {
            child,
            login_url,
            http,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/sfsim/{path}", self.login_url);
        let mut request = self.http.request(method, &url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("sfsim control call {path} failed"))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("sfsim control call {path} answered {status}: {answer}");
        }
        Ok(answer)
    }

    /// Creates the connected app; returns (consumer key, consumer secret).
    pub async fn create_app(&self, callback: &str) -> anyhow::Result<(String, String)> {
        let app = self
            .call(
                reqwest::Method::POST,
                "apps",
                json!({ "name": "forcelink bench", "callback_urls": [callback] }),
            )
            .await?;
        let text = |field: &str| -> anyhow::Result<String> {
            app[field]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("sfsim app has no {field}: {app}"))
        };
        Ok((text("consumer_key")?, text("consumer_secret")?))
    }

    /// Creates a production org without seed data; returns its id.
    pub async fn create_org(&self, my_domain: &str) -> anyhow::Result<String> {
        let org = self
            .call(
                reqwest::Method::POST,
                "orgs",
                json!({ "name": my_domain, "my_domain": my_domain, "seed_accounts": 0,
                        "seed_contacts_per_account": 0 }),
            )
            .await?;
        org["org_id"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("sfsim org has no org_id: {org}"))
    }

    pub async fn create_user(&self, org_id: &str, username: &str) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            &format!("orgs/{org_id}/users"),
            json!({ "username": username }),
        )
        .await
        .map(drop)
    }

    pub async fn advance_clock(&self, seconds: u64) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::POST,
            "clock/advance",
            json!({ "seconds": seconds }),
        )
        .await
        .map(drop)
    }

    pub async fn counters(&self) -> anyhow::Result<Counters> {
        let value = self
            .call(reqwest::Method::GET, "counters", Value::Null)
            .await?;
        serde_json::from_value(value).context("sfsim counters have an unexpected shape")
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
