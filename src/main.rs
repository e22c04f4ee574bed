//! The sosrouter binary: the command line and what each command runs. The
//! work is done in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sosrouter",
    version,
    about = "Emergency call router: finds emergency INVITEs, locates the caller and relays each call to the right PSAP or screening center"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration and everything it points to (country rules,
    /// inventory, service areas, trunk names) without starting.
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
        /// Number inventory file, as `run --inventory`.
        #[arg(long)]
        inventory: Option<PathBuf>,
    },
    /// Run the router. Without --config it runs on the shipped lab
    /// configuration (config/loopback.toml, compiled in).
    Run {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Number inventory (TSV or CSV); replaces `emergency.inventory`.
        #[arg(long)]
        inventory: Option<PathBuf>,
    },
    /// Print what the router makes of SIP messages, one JSON object per file:
    /// the message, and for requests the emergency detection, the location
    /// and the routing decision.
    Inspect {
        /// Read each file as TCP stream bytes instead of one datagram.
        #[arg(long)]
        stream: bool,
        /// Configuration file (TOML); default: the shipped lab configuration.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Number inventory (TSV or CSV); replaces `emergency.inventory`.
        #[arg(long)]
        inventory: Option<PathBuf>,
        /// Where the messages are taken to come from (IP:PORT); default: an
        /// address the configuration takes requests from (the first inbound
        /// trunk's network, else the first `sip.allow` network).
        #[arg(long)]
        from: Option<std::net::SocketAddr>,
        /// Message files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// The number inventory against the database the configuration names
    /// (or SOSROUTER_DATABASE_URL): running routers follow an import
    /// within a second.
    Inventory {
        #[command(subcommand)]
        command: InventoryCommand,
    },
    /// Admin API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum InventoryCommand {
    /// Add or change the numbers and tenant locations of a file (TSV, CSV
    /// or JSON, in the columns of an upload), all of them or, when a row
    /// cannot be applied, none. Numbers the file does not list are left
    /// as they are.
    Import {
        /// The inventory file.
        file: PathBuf,
        /// Configuration file (TOML); default: the shipped one.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Every row is this tenant's (else each row names its tenant).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Write the inventory as a file `import` reads back: tenant locations
    /// first, then the numbers.
    Export {
        /// Configuration file (TOML); default: the shipped one.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Where to write (default: standard output).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// CSV instead of TSV.
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a fresh random token (shown once: store it) and the
    /// `[[admin.token]]` table to paste into the configuration, which
    /// holds only the token's SHA-256.
    New {
        /// `operator` (every tenant) or `tenant-admin` (one tenant).
        #[arg(long, value_parser = ["operator", "tenant-admin"])]
        role: String,
        /// The tenant of a tenant-admin token.
        #[arg(long)]
        tenant: Option<String>,
        /// The token's name, written into the audit log with each change.
        #[arg(long)]
        name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file, inventory } => {
            let result = sosrouter::config::Config::load(&file)
                .map_err(|e| e.to_string())
                .and_then(|c| sosrouter::check::check(&c, inventory.as_deref()));
            match result {
                Ok(lines) => {
                    for l in lines {
                        println!("ok: {l}");
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sosrouter: {}: {e}", file.display());
                    ExitCode::from(2)
                }
            }
        }
        Command::Run { config, inventory } => match load_config(config.as_ref()) {
            Ok(c) => sosrouter::driver::process::run(c, config, inventory),
            Err(e) => {
                eprintln!("sosrouter: {e}");
                ExitCode::from(2)
            }
        },
        Command::Inventory { command } => inventory(command),
        Command::Token {
            command: TokenCommand::New { role, tenant, name },
        } => {
            let role = match role.as_str() {
                "operator" => sosrouter::config::Role::Operator,
                _ => sosrouter::config::Role::TenantAdmin,
            };
            match sosrouter::token::new(role, tenant.as_deref(), &name) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sosrouter: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Inspect {
            stream,
            config,
            inventory,
            from,
            files,
        } => {
            let result = load_config(config.as_ref()).and_then(|c| {
                sosrouter::inspect::run(&c, inventory.as_deref(), from, stream, &files)
            });
            match result {
                Ok(0) => ExitCode::SUCCESS,
                Ok(_unreadable) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("sosrouter: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

fn inventory(command: InventoryCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sosrouter: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    use sosrouter::store::transfer;
    let result = match command {
        InventoryCommand::Import {
            file,
            config,
            tenant,
        } => load_config(config.as_ref()).and_then(|c| {
            let s = runtime.block_on(transfer::import(&c, &file, tenant))?;
            Ok(format!(
                "{}: {} created, {} updated, {} unchanged, {} locations",
                file.display(),
                s.created,
                s.updated,
                s.unchanged,
                s.locations
            ))
        }),
        InventoryCommand::Export {
            config,
            output,
            csv,
        } => load_config(config.as_ref()).and_then(|c| {
            let e = match &output {
                Some(p) => {
                    let f =
                        std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?;
                    runtime.block_on(transfer::export(&c, f, csv))?
                }
                None => runtime.block_on(transfer::export(&c, std::io::stdout().lock(), csv))?,
            };
            Ok(format!(
                "exported {} numbers and {} tenant locations{}{}",
                e.numbers,
                e.locations,
                if e.dropped_elements > 0 {
                    format!(
                        "; {} address elements that are no RFC 5139 element left out",
                        e.dropped_elements
                    )
                } else {
                    String::new()
                },
                if e.dropped_links > 0 {
                    format!(
                        "; {} numbers with their own address written without their location link",
                        e.dropped_links
                    )
                } else {
                    String::new()
                }
            ))
        }),
    };
    match result {
        Ok(line) => {
            eprintln!("sosrouter: {line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sosrouter: {e}");
            ExitCode::from(2)
        }
    }
}

fn load_config(path: Option<&PathBuf>) -> Result<sosrouter::config::Config, String> {
    match path {
        Some(p) => sosrouter::config::Config::load(p).map_err(|e| e.to_string()),
        None => sosrouter::config::Config::from_toml(sosrouter::config::EMBEDDED_DEFAULT)
            .map_err(|e| format!("the shipped configuration: {e}")),
    }
}
