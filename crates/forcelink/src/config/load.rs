//! Loading the configuration: the TOML file, then the `FORCELINK_` environment over it, and
//! `x_file` settings replaced by the files' contents. The only code that reads the environment.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

use super::Config;

const ENV_PREFIX: &str = "FORCELINK_";

impl Config {
    /// Loads the file (if any) and the process environment, then validates.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        #[allow(clippy::disallowed_methods)] // the one place that reads the environment
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(path, &env)
    }

    /// Loads from a file and the given environment pairs.
    pub fn load_from(path: Option<&Path>, env: &[(String, String)]) -> anyhow::Result<Self> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read config file {}", path.display()))?;
                let table: toml::Table = toml::from_str(&text)
                    .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
                resolve_files(&table)?
                    .try_into::<Config>()
                    .map_err(|error| {
                        anyhow!("config file {}: {}", path.display(), error.message())
                    })?;
                table
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            if rest == "CONFIG" || rest.starts_with("TEST_") || rest == "LOG" {
                continue;
            }
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            let mut candidate = table.clone();
            insert_path(&mut candidate, &path, parse_env_value(value));
            let known = resolve_files(&candidate).and_then(|resolved| {
                resolved
                    .try_into::<Config>()
                    .map_err(|error| anyhow!(error.message().to_string()))
            });
            match known {
                Ok(_) => table = candidate,
                Err(error) if error.to_string().contains("unknown field") => {
                    tracing::warn!(variable = %name, "ignoring unknown environment variable");
                }
                Err(error) => bail!("environment variable {name}: {error}"),
            }
        }
        let resolved = resolve_files(&table)?;
        let config: Config = resolved
            .try_into()
            .map_err(|error| anyhow!(error.message().to_string()))?;
        Ok(config)
    }

    pub fn config_path_from_env() -> Option<PathBuf> {
        #[allow(clippy::disallowed_methods)] // the one place that reads the environment
        std::env::var_os("FORCELINK_CONFIG").map(PathBuf::from)
    }
}

/// `FORCELINK_X=30` is a number, `[a, b]` a list, `true` a bool; anything else a string.
fn parse_env_value(value: &str) -> toml::Value {
    let trimmed = value.trim();
    if let Ok(number) = trimmed.parse::<i64>() {
        return toml::Value::Integer(number);
    }
    if let Ok(flag) = trimmed.parse::<bool>() {
        return toml::Value::Boolean(flag);
    }
    let list = trimmed
        .starts_with('[')
        .then(|| toml::from_str::<toml::Table>(&format!("v = {trimmed}")).ok())
        .flatten()
        .and_then(|table| table.get("v").cloned());
    if let Some(list) = list {
        return list;
    }
    toml::Value::String(value.to_string())
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}

/// Replaces every `x_file = "path"` with `x = <file contents, trimmed>`.
fn resolve_files(table: &toml::Table) -> anyhow::Result<toml::Table> {
    let mut out = toml::Table::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) => {
                out.insert(key.clone(), toml::Value::Table(resolve_files(inner)?));
            }
            // Arrays of tables (`[[webhooks.endpoints]]`) may hold `x_file` settings too.
            toml::Value::Array(items) => {
                let resolved = items
                    .iter()
                    .map(|item| match item {
                        toml::Value::Table(inner) => resolve_files(inner).map(toml::Value::Table),
                        other => Ok(other.clone()),
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                out.insert(key.clone(), toml::Value::Array(resolved));
            }
            toml::Value::String(path) if key.ends_with("_file") => {
                let secret = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {key} {path}"))?;
                out.insert(
                    key.trim_end_matches("_file").to_string(),
                    toml::Value::String(secret.trim().to_string()),
                );
            }
            other => {
                out.insert(key.clone(), other.clone());
            }
        }
    }
    Ok(out)
}
