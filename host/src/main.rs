//! The `ledgerbridge` command line.

mod demo;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ledgerbridge::runtime::{Runtime, RuntimeConfig};
use std::path::PathBuf;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the built-in CSV connector on sample bills and payments, and
    /// prints what it did and where the files are.
    Demo {
        /// The directory the CSV connection is granted (created if missing).
        #[arg(long, default_value = "ledgerbridge-demo")]
        dir: PathBuf,
    },
    /// Works with plugin files.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Loads a plugin and prints its name, version, contract version and
    /// capabilities, or why it cannot run.
    Check {
        /// The plugin's `.wasm` component.
        file: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cache_dir = if cli.no_cache {
        None
    } else {
        cli.cache_dir.or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ledgerbridge"))
        })
    };
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir,
        ..RuntimeConfig::default()
    })?;
    match cli.command {
        Command::Demo { dir } => demo::run(&runtime, &dir).await,
        Command::Plugin {
            command: PluginCommand::Check { file },
        } => plugin_check(&runtime, &file).await,
    }
}

async fn plugin_check(runtime: &Runtime, file: &std::path::Path) -> anyhow::Result<()> {
    let plugin = runtime
        .load_file(file)
        .await
        .with_context(|| format!("{} cannot be run", file.display()))?;
    let d = &plugin.descriptor;
    println!("name:             {}", d.name);
    println!("version:          {}", d.version);
    println!(
        "contract:         ledgerbridge:connector@{}",
        plugin.contract_version
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
