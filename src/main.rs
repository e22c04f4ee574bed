//! The sosrouter binary: command line, logging, runtime. The work is done in
//! the library.

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
    /// Print what the router makes of SIP messages, one JSON object per file.
    Inspect {
        /// Read each file as TCP stream bytes instead of one datagram.
        #[arg(long)]
        stream: bool,
        /// Message files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Inspect { stream, files } => {
            let mut failed = false;
            for f in files {
                let name = f.display().to_string();
                match std::fs::read(&f) {
                    Ok(data) => {
                        let v = sosrouter::inspect::describe(&name, data.into(), stream);
                        println!("{v}");
                    }
                    Err(e) => {
                        eprintln!("sosrouter: {name}: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}
