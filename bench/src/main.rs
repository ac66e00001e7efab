use clap::Parser;
use fasthook_bench::cli::{Cli, Command};
use fasthook_bench::{bare, clock, relay, report, workloads};
use std::process::ExitCode;

/// What a child relay's outcome means for the exit status.
fn relay_exit(what: &str, outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("fasthook-bench: cannot start the runtime: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    clock::epoch();
    match cli.command {
        // actix-web runs its own system; the bench's tokio runtime is not needed.
        Some(Command::Bare {
            target,
            listen,
            data_dir,
        }) => relay_exit("bare relay", bare::run(&listen, &target, &data_dir)),
        Some(Command::Relay { target, listen }) => match runtime() {
            Some(rt) => relay_exit("relay", rt.block_on(relay::serve(&listen, &target))),
            None => ExitCode::from(1),
        },
        None => {
            let Some(rt) = runtime() else {
                return ExitCode::from(1);
            };
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
