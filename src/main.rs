use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// glibc's allocator spent a sixth of the gateway's CPU at full load (malloc, free,
/// consolidation and page faults from returning memory); mimalloc's thread-local heaps fit
/// the writer thread's and the actors' short-lived buffers far better (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// FastHook: a self-hosted webhook gateway.
#[derive(Parser)]
#[command(name = "fasthook", version, about)]
struct Cli {
    /// Client commands: print the JSON answer instead of a table (also after the command).
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (embedded sled database under the data directory).
    Serve {
        /// Config file (TOML). Defaults to config/fasthook.toml when that file exists.
        #[arg(long, env = "FASTHOOK_CONFIG")]
        config: Option<PathBuf>,
    },
    #[command(flatten)]
    Client(fasthook::cli::client::Resource),
    /// Run a local receiver that answers 200 and prints every delivery.
    DevReceiver {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            let path = config.or_else(|| {
                let default = PathBuf::from("config/fasthook.toml");
                default.exists().then_some(default)
            });
            let config =
                match fasthook::config::Config::load(path.as_deref(), |k| std::env::var(k).ok()) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("fasthook: bad configuration: {e}");
                        return ExitCode::from(2);
                    }
                };
            match fasthook::server::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fasthook: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Client(resource) => {
            match fasthook::cli::client::run(fasthook::cli::client::ClientArgs {
                json: cli.json || resource.json(),
                resource,
            }) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("fasthook: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::DevReceiver { listen } => match fasthook::cli::dev_receiver::run(&listen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fasthook dev-receiver: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
