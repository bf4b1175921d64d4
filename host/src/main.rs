//! The `ledgerbridge` command line.

mod demo;
mod dev;
mod ops;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ledgerbridge::model::Target;
use ledgerbridge::runtime::{Runtime, RuntimeConfig};
use ledgerbridge::store::{Store, StoreOptions};
use ledgerbridge::sync::{Engine, RetryPolicy, Selection, WorkerConfig};
use std::path::PathBuf;
use std::sync::Arc;

/// Keeps an AP product's bills and payments in step with ERPs, through
/// sandboxed WebAssembly connector plugins.
#[derive(Parser)]
#[command(name = "ledgerbridge", version)]
struct Cli {
    /// Where compiled plugins are cached (default: ~/.cache/ledgerbridge).
    #[arg(long, global = true, env = "LEDGERBRIDGE_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Do not cache compiled plugins.
    #[arg(long, global = true)]
    no_cache: bool,
    /// The store (SQLite); created if missing.
    #[arg(
        long,
        global = true,
        env = "LEDGERBRIDGE_DB",
        default_value = "ledgerbridge.db"
    )]
    db: PathBuf,
    /// Seconds a claimed sync stays leased to its worker without a
    /// heartbeat; after that another worker may take it back.
    #[arg(long, global = true, env = "LEDGERBRIDGE_LEASE_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    lease_secs: u64,
    /// The file of keys the store's secrets are sealed with (the current
    /// key first, earlier ones after it); default: `<db>.seal-key`, made
    /// when missing. See README.md, Secrets.
    #[arg(long, global = true, env = "LEDGERBRIDGE_SEAL_KEY_FILE")]
    seal_key_file: Option<PathBuf>,
    /// The plugin registry's directory: installed plugins, several versions
    /// of each side by side (default: `<db>.plugins`). See README.md,
    /// Plugins and versions.
    #[arg(long, global = true, env = "LEDGERBRIDGE_PLUGINS_DIR")]
    plugins_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a built-in connector on sample bills and payments, and prints
    /// what it did: the CSV connector (and where its files are), or the
    /// Xero or QuickBooks Online connector against a simulator the demo
    /// starts.
    Demo {
        /// The directory the CSV connection is granted (created if missing).
        #[arg(long, default_value = "ledgerbridge-demo")]
        dir: PathBuf,
        /// Which ERP: `csv` (files), `xero` or `quickbooks` (a local
        /// simulator of Xero or QuickBooks Online).
        #[arg(long, default_value = "csv", value_parser = ["csv", "xero", "quickbooks"])]
        erp: String,
    },
    /// A plugin developer's inner loop: builds the plugin crate in
    /// PLUGIN_CRATE_DIR for wasm32-wasip2, runs it on sample bills and
    /// payments against a local target and prints every operation's answer;
    /// then rebuilds and hot-reloads it on every save and runs the samples
    /// again. See README.md, Writing a plugin.
    Dev {
        /// The plugin crate's directory (where its Cargo.toml is).
        plugin_crate_dir: PathBuf,
        /// What the connector runs against: a directory granted to it, or a
        /// Xero or QuickBooks Online simulator started here.
        #[arg(long, value_enum, default_value = "dir")]
        target: dev::Target,
        /// The directory granted with `--target dir` (default:
        /// `<crate>/target/ledgerbridge-dev`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// A setting for the connector, `name=value` (repeatable).
        #[arg(long = "setting", value_parser = parse_setting)]
        settings: Vec<(String, String)>,
        /// Build with `--release`.
        #[arg(long)]
        release: bool,
        /// Build, run the samples once, and stop (non-zero when a sample failed).
        #[arg(long)]
        once: bool,
        /// Milliseconds (1 to 60000) a new build must stay unchanged before
        /// it is reloaded.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=60_000))]
        debounce_ms: u64,
    },
    /// Works with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Adds a tenant.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Adds, lists, enables and disables connections.
    Connection {
        #[command(subcommand)]
        command: ConnectionCommand,
    },
    /// Records documents and payments from a JSON file and queues the syncs
    /// they cause; a file with any invalid item is refused whole.
    Import {
        /// `{"documents": [...], "payments": [...]}`.
        file: PathBuf,
    },
    /// Syncs one document in one connection now, and prints the result.
    Sync {
        /// The document's id.
        document: String,
        /// The connection to sync it in (its tenant is the document's).
        #[arg(long)]
        connection: String,
        /// Which entry: the bill entry or the payment entry.
        #[arg(long, value_parser = parse_target, default_value = "bill")]
        target: Target,
        /// Send the update even if the ERP already has the same content.
        #[arg(long)]
        force: bool,
    },
    /// Re-syncs many documents in one connection, with progress, and prints
    /// a result per document and a summary.
    Resync {
        /// The connection to re-sync in.
        #[arg(long)]
        connection: String,
        /// These documents (comma separated).
        #[arg(long, value_delimiter = ',', conflicts_with_all = ["attention", "all"])]
        documents: Vec<String>,
        /// Every document in Requires attention for the connection.
        #[arg(long, conflicts_with = "all")]
        attention: bool,
        /// Every document of the connection's tenant.
        #[arg(long)]
        all: bool,
        /// Send updates even where the ERP already has the same content.
        #[arg(long)]
        force: bool,
        /// Print the result of each document, not only the summary.
        #[arg(long)]
        each: bool,
    },
    /// Shows a document's integration log.
    Log {
        /// The document's id.
        document: String,
        /// The document's tenant (or name a connection of it).
        #[arg(long)]
        tenant: Option<String>,
        /// Only this connection's attempts.
        #[arg(long)]
        connection: Option<String>,
        /// Print JSON (the HTTP API's shape) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Shows each connection's queue by kind, its call budget and calls
    /// made, and whether it is paused and until when (R5).
    Status {
        /// Only this tenant's connections.
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lists what Requires attention.
    Attention {
        /// Only this connection's items.
        #[arg(long)]
        connection: Option<String>,
        /// Print JSON (the HTTP API's shape) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Dismisses an attention item.
    Dismiss {
        /// The document's id.
        document: String,
        /// The connection the item is in.
        #[arg(long)]
        connection: String,
        /// Which entry's item: bill or payment.
        #[arg(long, value_parser = parse_target, default_value = "bill")]
        target: Target,
    },
    /// Clears a booked lock once the period is reopened in the ERP.
    Unlock {
        /// The document's id (bill entry) or the payment's id (payment entry).
        subject: String,
        /// The connection the entry is in.
        #[arg(long)]
        connection: String,
        /// Which entry: bill or payment.
        #[arg(long, value_parser = parse_target, default_value = "bill")]
        target: Target,
    },
    /// Shows a funding account's check numbering, or sets its next number.
    FundingAccount {
        #[command(subcommand)]
        command: FundingCommand,
    },
    /// Lists payments the ERP rejected, with their check number and bank id.
    FailedExports {
        /// Only this connection's payments.
        #[arg(long)]
        connection: Option<String>,
        /// Print JSON (the HTTP API's shape) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Changes the check number and/or bank id of a payment in Failed to
    /// export (refused for any other payment).
    EditExport {
        /// The payment's id.
        payment: String,
        /// The payment's tenant.
        #[arg(long)]
        tenant: String,
        /// The new check number (one never issued nor rejected by the ERP).
        #[arg(long)]
        check_number: Option<u64>,
        /// The ERP's bank account id to pay from.
        #[arg(long)]
        bank_id: Option<String>,
    },
    /// Sends a rejected payment again, and prints the result.
    Export {
        /// The payment's id.
        payment: String,
        /// The connection whose Failed to export lists it.
        #[arg(long)]
        connection: String,
    },
    /// Serves the HTTP API (see README.md, The HTTP API), with a worker
    /// in the same process unless --no-worker. Ctrl-C or SIGTERM stop it:
    /// requests under way and running syncs finish first.
    Serve {
        /// The address to listen on.
        #[arg(long, env = "LEDGERBRIDGE_LISTEN", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Run no worker here (workers run as `ledgerbridge worker`).
        #[arg(long)]
        no_worker: bool,
        /// The largest request body taken, in MiB (a larger one is refused
        /// before it is read whole).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
        max_body_mib: u32,
        /// Connections open at once; more are closed when accepted.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        max_connections: u32,
        /// Seconds a client has to send a request's headers, then its body
        /// (a slower one is cut off).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3600))]
        read_timeout_secs: u32,
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Prints the HTTP API's OpenAPI 3.1 description (as served at
    /// /openapi.json; the repository keeps it in docs/openapi.json).
    Openapi,
    /// API tokens: made, listed, rotated, revoked.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The keys that seal the store's secrets.
    SealKey {
        #[command(subcommand)]
        command: SealKeyCommand,
    },
    /// Runs queued syncs.
    Worker {
        /// Stop when no sync is queued or running.
        #[arg(long)]
        until_idle: bool,
        #[command(flatten)]
        watch: WatchArgs,
    },
}

/// Hot reload (P3).
#[derive(clap::Args)]
struct WatchArgs {
    /// Reload plugins when their files change: the plugins directory and
    /// every `.wasm` a connection names by path. Operations running finish
    /// on the old version; a build that cannot load leaves it serving.
    #[arg(long)]
    watch: bool,
    /// Milliseconds (1 to 60000) a changed plugin file must stay unchanged
    /// before it is reloaded (several quick writes make one reload).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    debounce_ms: u64,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Makes a token and prints it (shown this once).
    Create {
        /// A tenant's token: reaches that tenant's data only.
        #[arg(long, conflicts_with = "admin", required_unless_present = "admin")]
        tenant: Option<String>,
        /// An admin token: manages tenants, tokens and connections.
        #[arg(long)]
        admin: bool,
        /// What the token is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Lists tokens (never their secrets).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Gives a token a new secret and prints it; the old one stops working.
    Rotate {
        /// The token's id.
        id: String,
    },
    /// Revokes a token: it stops working.
    Revoke {
        /// The token's id.
        id: String,
    },
}

#[derive(Subcommand)]
enum SealKeyCommand {
    /// Prints a new random key (base64), for a key file or
    /// LEDGERBRIDGE_SEAL_KEY.
    New,
    /// Seals every secret of the store under the current key (after a
    /// rotation; opening the store does it too) and prints the key ids.
    Reseal,
}

#[derive(Subcommand)]
enum FundingCommand {
    /// Shows the next check number and the last issued.
    Show {
        /// The funding account's id.
        id: String,
        /// Its tenant.
        #[arg(long)]
        tenant: String,
        /// Print JSON (the HTTP API's shape) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sets the next check number (refused at or below one already issued).
    SetNext {
        /// The funding account's id.
        id: String,
        /// The number the next check gets.
        next: u64,
        /// Its tenant.
        #[arg(long)]
        tenant: String,
    },
    /// Clears numbers wrongly marked used in the ERP (for example by a
    /// connector that reported numbers it was not asked about); numbers
    /// issued to payments are never cleared.
    ClearUsed {
        /// The funding account's id.
        id: String,
        /// The first number to clear.
        first: u64,
        /// The last number to clear.
        last: u64,
        /// Its tenant.
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Adds a tenant.
    Add {
        /// The tenant's id (letters, digits, `.`, `_`, `:`, `-`).
        id: String,
    },
}

#[derive(Subcommand)]
enum ConnectionCommand {
    /// Adds or replaces a connection from a JSON file.
    Add {
        /// The connection's settings (see README.md, Running it for tenants).
        file: PathBuf,
    },
    /// Lists connections.
    List {
        /// Print JSON (the HTTP API's shape) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Enables a connection, and says what changed while it was disabled.
    Enable {
        /// The connection's id.
        id: String,
    },
    /// Disables a connection: no new syncs; its history stays.
    Disable {
        /// The connection's id.
        id: String,
    },
    /// Lifts a connection's pause (its ERP's rate limit or its own call
    /// budget), when the limit was reset early or a Retry-After was absurd.
    Resume {
        /// The connection's id.
        id: String,
    },
}

fn parse_target(s: &str) -> Result<Target, String> {
    Target::parse(s).ok_or_else(|| format!("`{s}` is not a target: bill or payment"))
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Loads a plugin and prints its name, version, contract version and
    /// capabilities, or why it cannot run.
    Check {
        /// The plugin's `.wasm` component.
        file: PathBuf,
    },
    /// Lists every plugin version: built in, installed in the plugins
    /// directory, or named by path; its contract version, where it came
    /// from, and the connections running it.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Checks a plugin (it loads, its contract is accepted, it describes
    /// itself with a name and a semver version) and installs it in the
    /// plugins directory as `<name>/<version>.wasm`.
    Add {
        /// The plugin's `.wasm` component.
        file: PathBuf,
        /// Replace an installed build of the same version.
        #[arg(long)]
        replace: bool,
    },
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}` is not a setting: name=value"))
}

fn main() -> std::process::ExitCode {
    // Piped into `head` or `grep -q`, end quietly as other tools do, rather
    // than panicking on a closed stdout.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // starts has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The key ring the operator gave: `LEDGERBRIDGE_SEAL_KEY` (the keys
/// themselves), else the key file; `None` for the default file beside the
/// store. Both given is refused, not guessed between.
fn seal_keys(
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<ledgerbridge::seal::Keyring>> {
    use ledgerbridge::seal::Keyring;
    let env = std::env::var("LEDGERBRIDGE_SEAL_KEY")
        .ok()
        .filter(|v| !v.trim().is_empty());
    match (env, file) {
        (Some(_), Some(_)) => anyhow::bail!(
            "LEDGERBRIDGE_SEAL_KEY and --seal-key-file (LEDGERBRIDGE_SEAL_KEY_FILE) are both set: give one"
        ),
        (Some(text), None) => Ok(Some(
            Keyring::parse(&text).context("LEDGERBRIDGE_SEAL_KEY")?,
        )),
        (None, Some(f)) => Ok(Some(Keyring::from_file(f)?)),
        (None, None) => Ok(None),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cache_dir = if cli.no_cache {
        None
    } else {
        cli.cache_dir.or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ledgerbridge"))
        })
    };
    let runtime = Arc::new(Runtime::new(RuntimeConfig {
        cache_dir,
        ..RuntimeConfig::default()
    })?);
    let open_store = || -> anyhow::Result<Store> {
        Store::open_with(
            &cli.db,
            StoreOptions {
                keys: seal_keys(cli.seal_key_file.as_deref())?.map(Arc::new),
                key_file: cli.seal_key_file.clone(),
                ..StoreOptions::default()
            },
        )
    };
    let plugins_dir = cli.plugins_dir.clone().unwrap_or_else(|| {
        let mut d = cli.db.clone().into_os_string();
        d.push(".plugins");
        PathBuf::from(d)
    });
    let registry = Arc::new(ledgerbridge::runtime::Registry::new(
        runtime.clone(),
        Some(plugins_dir),
    ));
    // The installed plugins, for every command that runs or lists them.
    if !matches!(
        cli.command,
        Command::Demo { .. }
            | Command::Dev { .. }
            | Command::Openapi
            | Command::Plugin {
                command: PluginCommand::Check { .. }
            }
    ) {
        registry.scan().await;
    }
    let engine = |_: Arc<Runtime>| -> anyhow::Result<Arc<Engine>> {
        let store = open_store()?;
        Ok(Arc::new(Engine::with_registry(
            store,
            registry.clone(),
            RetryPolicy::default(),
            WorkerConfig {
                lease: std::time::Duration::from_secs(cli.lease_secs),
                ..WorkerConfig::default()
            },
        )))
    };
    match &cli.command {
        Command::Demo { dir, erp } if erp == "xero" => {
            let _ = dir;
            demo::run_xero(runtime).await
        }
        Command::Demo { dir, erp } if erp == "quickbooks" => {
            let _ = dir;
            demo::run_quickbooks(runtime).await
        }
        Command::Demo { dir, .. } => demo::run(runtime, dir).await,
        Command::Dev {
            plugin_crate_dir,
            target,
            dir,
            settings,
            release,
            once,
            debounce_ms,
        } => {
            dev::run(
                runtime,
                dev::Options {
                    crate_dir: plugin_crate_dir.clone(),
                    target: *target,
                    dir: dir.clone(),
                    settings: settings.clone(),
                    release: *release,
                    once: *once,
                    debounce: std::time::Duration::from_millis(*debounce_ms),
                },
            )
            .await
        }
        Command::Plugin {
            command: PluginCommand::Check { file },
        } => plugin_check(&runtime, file).await,
        Command::Serve {
            listen,
            no_worker,
            max_body_mib,
            max_connections,
            read_timeout_secs,
            watch,
        } => {
            let options = ledgerbridge::api::ServeOptions {
                worker: !*no_worker,
                body_limit: (*max_body_mib as usize) << 20,
                max_connections: *max_connections as usize,
                read_timeout: std::time::Duration::from_secs((*read_timeout_secs).into()),
                ..Default::default()
            };
            let e = engine(runtime)?;
            let _watching = start_watch(&e, watch).await?;
            ops::serve(e, *listen, options).await
        }
        Command::Openapi => {
            println!("{}", ledgerbridge::api::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::Token { command } => {
            let e = engine(runtime)?;
            match command {
                TokenCommand::Create {
                    tenant,
                    admin: _,
                    label,
                } => ops::create_token(&e, tenant.as_deref(), label).await,
                TokenCommand::List { tenant, json } => {
                    ops::list_tokens(&e, tenant.as_deref(), *json).await
                }
                TokenCommand::Rotate { id } => ops::rotate_token(&e, id).await,
                TokenCommand::Revoke { id } => ops::revoke_token(&e, id).await,
            }
        }
        Command::SealKey {
            command: SealKeyCommand::New,
        } => {
            println!("{}", ledgerbridge::seal::new_key());
            Ok(())
        }
        Command::SealKey {
            command: SealKeyCommand::Reseal,
        } => {
            // Opening the store reseals; the key ids say which key holds them.
            let keys = match seal_keys(cli.seal_key_file.as_deref())? {
                Some(k) => k,
                None => {
                    ledgerbridge::seal::Keyring::from_file_or_new(
                        &ledgerbridge::store::default_key_file(&cli.db),
                    )?
                    .0
                }
            };
            let ids = keys.key_ids();
            Store::open_with(
                &cli.db,
                StoreOptions {
                    keys: Some(Arc::new(keys)),
                    ..StoreOptions::default()
                },
            )?;
            println!(
                "every secret in {} is sealed under key {}{}",
                cli.db.display(),
                ids[0],
                if ids.len() > 1 {
                    format!(
                        "; the earlier keys ({}) may now be removed",
                        ids[1..].join(", ")
                    )
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        Command::Tenant {
            command: TenantCommand::Add { id },
        } => ops::add_tenant(&*engine(runtime)?, id).await,
        Command::Connection { command } => {
            let e = engine(runtime)?;
            match command {
                ConnectionCommand::Add { file } => ops::add_connection(&e, file).await,
                ConnectionCommand::List { json } => ops::list_connections(&e, *json).await,
                ConnectionCommand::Enable { id } => ops::set_enabled(&e, id, true).await,
                ConnectionCommand::Disable { id } => ops::set_enabled(&e, id, false).await,
                ConnectionCommand::Resume { id } => ops::resume(&e, id).await,
            }
        }
        Command::Import { file } => ops::import(&*engine(runtime)?, file).await,
        Command::Sync {
            document,
            connection,
            target,
            force,
        } => ops::sync_one(&engine(runtime)?, document, connection, *target, *force).await,
        Command::Resync {
            connection,
            documents,
            attention,
            all,
            force,
            each,
        } => {
            let selection = if *all {
                Selection::All
            } else if *attention {
                Selection::Attention
            } else if !documents.is_empty() {
                Selection::Documents(documents.clone())
            } else {
                anyhow::bail!("say which documents: --documents a,b,c, --attention or --all");
            };
            ops::resync(&engine(runtime)?, connection, selection, *force, *each).await
        }
        Command::Log {
            document,
            tenant,
            connection,
            json,
        } => {
            ops::log(
                &*engine(runtime)?,
                document,
                tenant.as_deref(),
                connection.as_deref(),
                *json,
            )
            .await
        }
        Command::Status { tenant, json } => {
            ops::status(&*engine(runtime)?, tenant.as_deref(), *json).await
        }
        Command::Attention { connection, json } => {
            ops::attention(&*engine(runtime)?, connection.as_deref(), *json).await
        }
        Command::Dismiss {
            document,
            connection,
            target,
        } => ops::dismiss(&*engine(runtime)?, document, connection, *target).await,
        Command::Unlock {
            subject,
            connection,
            target,
        } => ops::unlock(&*engine(runtime)?, subject, connection, *target).await,
        Command::Worker { until_idle, watch } => {
            let e = engine(runtime)?;
            let _watching = start_watch(&e, watch).await?;
            ops::worker(&e, *until_idle).await
        }
        Command::Plugin {
            command: PluginCommand::List { json },
        } => ops::list_plugins(&*engine(runtime)?, *json).await,
        Command::Plugin {
            command: PluginCommand::Add { file, replace },
        } => ops::add_plugin(&registry, file, *replace).await,
        Command::FundingAccount { command } => match command {
            FundingCommand::Show { id, tenant, json } => {
                ops::show_funding_account(&*engine(runtime)?, tenant, id, *json).await
            }
            FundingCommand::SetNext { id, next, tenant } => {
                ops::set_next_check_number(&*engine(runtime)?, tenant, id, *next).await
            }
            FundingCommand::ClearUsed {
                id,
                first,
                last,
                tenant,
            } => ops::clear_checks_marked_used(&*engine(runtime)?, tenant, id, *first, *last).await,
        },
        Command::FailedExports { connection, json } => {
            ops::failed_exports(&*engine(runtime)?, connection.as_deref(), *json).await
        }
        Command::EditExport {
            payment,
            tenant,
            check_number,
            bank_id,
        } => {
            ops::edit_export(
                &*engine(runtime)?,
                tenant,
                payment,
                *check_number,
                bank_id.clone(),
            )
            .await
        }
        Command::Export {
            payment,
            connection,
        } => ops::export(&engine(runtime)?, payment, connection).await,
    }
}

/// Starts hot reload when `--watch` was given (P3).
async fn start_watch(
    engine: &Engine,
    args: &WatchArgs,
) -> anyhow::Result<Option<ledgerbridge::runtime::WatchHandle>> {
    if !args.watch {
        return Ok(None);
    }
    let handle = engine
        .watch_plugins(std::time::Duration::from_millis(args.debounce_ms))
        .await?;
    eprintln!(
        "watching plugin files ({}, and every .wasm a connection names): a new build is reloaded {} ms after its last write",
        engine
            .registry()
            .dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default(),
        args.debounce_ms
    );
    Ok(Some(handle))
}

async fn plugin_check(runtime: &Runtime, file: &std::path::Path) -> anyhow::Result<()> {
    let plugin = runtime
        .load_file(file)
        .await
        .with_context(|| format!("{} cannot be run", file.display()))?;
    let d = &plugin.descriptor;
    println!("name:             {}", d.name);
    println!("version:          {}", d.version);
    let newest = ledgerbridge::runtime::contract::ACCEPTED[0];
    println!(
        "contract:         ledgerbridge:connector@{}{}",
        plugin.contract_version,
        if plugin.contract_version == newest {
            String::new()
        } else {
            format!(
                " (an older contract, still run: one item per call; rebuild with the SDK for {newest} to batch)"
            )
        }
    );
    let l = &d.limits;
    let per = |n: Option<u32>, what: &str| n.map_or(String::new(), |n| format!(", {n} a {what}"));
    println!(
        "limits:           {} calls at once{}{}; items per call: {} lookups, {} creates, {} updates",
        l.calls_at_once,
        per(l.calls_per_minute, "minute"),
        per(l.calls_per_day, "day"),
        l.lookups_per_call,
        l.creates_per_call,
        l.updates_per_call
    );
    let mut caps = vec!["bills"];
    use ledgerbridge::runtime::bindings::Capabilities as C;
    for (flag, name) in [
        (C::PAYMENTS, "payments"),
        (C::UPDATE_PAYMENTS, "update-payments"),
        (C::CHECK_NUMBERS_IN_USE, "check-numbers-in-use"),
    ] {
        if d.capabilities.contains(flag) {
            caps.push(name);
        }
    }
    println!("capabilities:     {}", caps.join(", "));
    if d.settings.is_empty() {
        println!("settings:         none");
    } else {
        println!("settings:");
        for s in &d.settings {
            let req = if s.required { "required" } else { "optional" };
            println!("  {:<16}{req}: {}", s.name, s.description);
        }
    }
    println!("sha256:           {}", plugin.digest);
    println!(
        "compiled in:      {:.1?}{}",
        plugin.compile_time,
        if plugin.from_cache {
            " (from cache)"
        } else {
            ""
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Issue 7 item 20: every command, argument and option says what it is.
    #[test]
    fn every_option_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if id != "help" && id != "version" && a.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {}", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "ledgerbridge", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
        Cli::command().debug_assert();
    }
}
