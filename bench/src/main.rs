use clap::Parser;
use fasthook_bench::cli::{Cli, Command};
use fasthook_bench::{bare, clock, relay, report, workloads};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Bare {
        target,
        listen,
        data_dir,
    }) = &cli.command
    {
        // actix-web runs its own system; no tokio runtime of the bench's is needed.
        return match bare::run(listen, target, data_dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bare relay: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    clock::epoch();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fasthook-bench: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match cli.command {
        Some(Command::Relay { target, listen }) => {
            match rt.block_on(relay::serve(&listen, &target)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("relay: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        Some(Command::Bare { .. }) => unreachable!("handled above"),
        None => {
            let settings = cli.bench.settings();
            let json = settings.json;
            // Ctrl-C drops the running future, which kills the children (kill_on_drop).
            let outcome = rt.block_on(async {
                tokio::select! {
                    r = workloads::run(settings) => Some(r),
                    _ = tokio::signal::ctrl_c() => None,
                }
            });
            let result = match outcome {
                None => {
                    eprintln!("\nfasthook-bench: interrupted");
                    return ExitCode::from(130);
                }
                Some(r) => r,
            };
            match result {
                Ok(rep) => {
                    let text = report::render_text(&rep);
                    if json {
                        eprintln!("{text}");
                        match serde_json::to_string_pretty(&rep) {
                            Ok(j) => println!("{j}"),
                            Err(e) => eprintln!("fasthook-bench: {e}"),
                        }
                    } else {
                        println!("{text}");
                    }
                    if rep.all_balanced {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("fasthook-bench: {e:#}");
                    if e.downcast_ref::<workloads::MissingBinary>().is_some() {
                        ExitCode::from(2)
                    } else {
                        ExitCode::from(1)
                    }
                }
            }
        }
    }
}
