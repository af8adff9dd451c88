//! The `sfsim` binary: starts the simulator, optionally seeds a demo (one app, three orgs of which
//! one is a sandbox, an admin user each), prints where everything is and serves until Ctrl-C.
//! It is a thin shell over the library; it must not hold behaviour of its own.

use clap::Parser;
use sfsim::{AppSpec, OrgSpec, Sim, UserSpec};

#[derive(Debug, Parser)]
#[command(name = "sfsim", about = "A local Salesforce OAuth + REST simulator")]
struct Cli {
    /// Create a demo app, three orgs (one sandbox) and an admin user in each.
    #[arg(long)]
    seed_demo: bool,
    /// The demo app's callback URL.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080/v1/connect/salesforce/callback"
    )]
    callback: String,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli).await {
        eprintln!("sfsim: {error}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let sim = Sim::start().await?;
    println!("production login host: {}", sim.production_login_url());
    println!("sandbox login host:    {}", sim.sandbox_login_url());
    println!(
        "control API:           {}/sfsim/",
        sim.production_login_url()
    );
    if cli.seed_demo {
        seed_demo(&sim, &cli.callback).await?;
    }
    println!("serving; press Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}

async fn seed_demo(sim: &Sim, callback: &str) -> Result<(), Box<dyn std::error::Error>> {
    let app = sim.create_app(AppSpec {
        name: "Demo Broker".to_owned(),
        callback_urls: vec![callback.to_owned()],
        ..AppSpec::default()
    });
    println!();
    println!("app \"{}\"", app.name);
    println!("  consumer key:    {}", app.consumer_key);
    println!("  consumer secret: {}", app.consumer_secret);
    println!("  callback:        {callback}");
    let orgs = [
        ("Acme", "acme", false),
        ("Globex", "globex", false),
        ("Initech UAT", "initech--uat", true),
    ];
    let mut first_admin = None;
    for (name, my_domain, sandbox) in orgs {
        let org = sim
            .create_org(OrgSpec {
                name: name.to_owned(),
                sandbox,
                my_domain: my_domain.to_owned(),
                seed_accounts: 12,
                seed_contacts_per_account: 3,
            })
            .await?;
        let username = format!("admin@{my_domain}.example.com");
        let user = sim.create_user(&org.org_id, UserSpec::named(&username))?;
        if first_admin.is_none() {
            first_admin = Some(user.username.clone());
        }
        println!();
        println!(
            "org \"{}\"{}",
            org.name,
            if sandbox { " (sandbox)" } else { "" }
        );
        println!("  org id:       {}", org.org_id);
        println!("  instance url: {}", org.instance_url);
        println!("  login url:    {}", org.login_url);
        println!("  admin user:   {} ({})", user.username, user.user_id);
    }
    println!();
    println!(
        "authorize with login_hint=<username>, or set a default approver via POST /sfsim/approver"
    );
    Ok(())
}
