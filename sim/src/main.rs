//! `ledgerbridge-sim`: runs an ERP simulator on loopback for developing
//! and testing connector plugins.

use clap::{Parser, Subcommand};
use ledgerbridge_sim::quickbooks::{self, Company, QuickBooksSim};
use ledgerbridge_sim::xero::{Config, Organisation, XeroSim};

#[derive(Parser)]
#[command(
    name = "ledgerbridge-sim",
    about = "Local ERP simulators for ledgerbridge connectors"
)]
struct Cli {
    #[command(subcommand)]
    erp: Erp,
}

#[derive(Subcommand)]
enum Erp {
    /// The Xero Accounting API 2.0 with one demo organisation, an OAuth2
    /// client and a grant.
    Xero {
        /// Port on 127.0.0.1 (0: any free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        #[arg(long, default_value = "ledgerbridge-dev")]
        client_id: String,
        #[arg(long, default_value = "ledgerbridge-dev-secret")]
        client_secret: String,
    },
    /// The QuickBooks Online Accounting API v3 with one demo company, an
    /// OAuth2 client and a grant.
    Quickbooks {
        /// Port on 127.0.0.1 (0: any free one).
        #[arg(long, default_value_t = 8081)]
        port: u16,
        #[arg(long, default_value = "ledgerbridge-dev")]
        client_id: String,
        #[arg(long, default_value = "ledgerbridge-dev-secret")]
        client_secret: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().erp {
        Erp::Xero {
            port,
            client_id,
            client_secret,
        } => {
            let sim = XeroSim::start(Config {
                port,
                ..Config::default()
            })
            .await?;
            let org = sim.add_organisation(Organisation::demo());
            sim.add_client(&client_id, &client_secret);
            let refresh = sim.grant(&client_id, &org);
            println!("A Xero simulator is serving (Ctrl-C stops it).");
            println!("  api_url        {}", sim.api_url());
            println!("  token_url      {}", sim.token_url());
            println!("  tenant_id      {org}");
            println!("  client_id      {client_id}");
            println!("  client_secret  {client_secret}");
            println!("  refresh_token  {refresh}   (rotates on every use)");
            println!(
                "  allowed_hosts  [\"http://{}\"]; bank account 090; expense accounts 400-493 (453 Office Expenses); tracking Region: North, South; Department: Sales, Operations",
                sim.addr()
            );
            println!(
                "{}",
                serde_json::json!({
                    "api_url": sim.api_url(), "token_url": sim.token_url(), "tenant_id": org,
                    "client_id": client_id, "client_secret": client_secret, "refresh_token": refresh,
                    "allowed_host": format!("http://{}", sim.addr()),
                })
            );
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
        Erp::Quickbooks {
            port,
            client_id,
            client_secret,
        } => {
            let sim = QuickBooksSim::start(quickbooks::Config {
                port,
                ..quickbooks::Config::default()
            })
            .await?;
            let realm = sim.add_company(Company::demo());
            sim.add_client(&client_id, &client_secret);
            let refresh = sim.grant(&client_id, &realm);
            println!("A QuickBooks Online simulator is serving (Ctrl-C stops it).");
            println!("  api_url        {}", sim.api_url());
            println!("  token_url      {}", sim.token_url());
            println!("  realm_id       {realm}");
            println!("  client_id      {client_id}");
            println!("  client_secret  {client_secret}");
            println!("  refresh_token  {refresh}   (rotates on every use)");
            println!(
                "  allowed_hosts  [\"http://{}\"]; bank accounts 35 Checking, 36 Savings; expense accounts 60 Office Supplies, 61 Freight & Shipping, 62-64; classes 100 Sales, 101 Operations; vendors 56 Acme Paper, 57 Globex Freight, 58 Initech Supplies",
                sim.addr()
            );
            println!(
                "{}",
                serde_json::json!({
                    "api_url": sim.api_url(), "token_url": sim.token_url(), "realm_id": realm,
                    "client_id": client_id, "client_secret": client_secret, "refresh_token": refresh,
                    "allowed_host": format!("http://{}", sim.addr()),
                })
            );
            tokio::signal::ctrl_c().await?;
            Ok(())
        }
    }
}
