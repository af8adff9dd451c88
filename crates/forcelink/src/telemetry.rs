//! Logging set-up: `FORCELINK_LOG` (or `RUST_LOG`) filter, human or JSON lines on stderr.
//! Logs never carry secrets: token types redact themselves and handlers log no bodies.

use tracing_subscriber::EnvFilter;

/// `default_filter` applies when neither variable is set.
pub fn init(json: bool, default_filter: &str) {
    #[allow(clippy::disallowed_methods)] // logging filter is read once at start-up
    let filter = std::env::var("FORCELINK_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter))
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
