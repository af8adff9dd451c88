//! forcelink's entry point: parse the command line, set up logging, run the command, and turn
//! a failure into a message and a non-zero exit.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = forcelink::cli::Cli::parse();
    // The demo talks to a person on stdout; keep its logs to warnings unless asked.
    let default_filter = match cli.command {
        forcelink::cli::Command::Demo { .. } => "warn",
        _ => "info,sqlx=warn,tower_http=warn",
    };
    forcelink::telemetry::init(cli.log_json, default_filter);
    match forcelink::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
