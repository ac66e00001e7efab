//! Wires the gateway together and runs it: store, engine, HTTP server, recovery, and the
//! orderly shutdown (stop intake → let attempts finish → flush the store → exit 0).

use actix_web::{web, App, HttpServer};

use crate::config::Config;
use crate::engine::Engine;
use crate::store::Store;
use crate::telemetry;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot open the data directory {path}: {message}")]
    Store { path: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Engine(#[from] crate::engine::EngineError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub fn run(config: Config) -> Result<(), ServeError> {
    telemetry::init_logging(&config.telemetry.log, config.log.format);
    let prometheus = telemetry::init_metrics();
    actix_web::rt::System::new().block_on(serve(config, prometheus))
}

async fn serve(
    config: Config,
    prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> Result<(), ServeError> {
    let data_dir = config.server.data_dir.clone();
    let opening = std::time::Instant::now();
    let store = Store::open_with_cache(
        &data_dir,
        config.store.durability,
        config.store.group_commit_linger,
        config.store.cache_bytes,
        config.store.body_segment_bytes,
    )
    .map_err(|e| ServeError::Store {
        path: data_dir.display().to_string(),
        message: e.to_string(),
    })?;
    // The benchmark (W7) reads this to tell sled's own open time from recovery's.
    tracing::info!(
        elapsed_ms = opening.elapsed().as_millis() as u64,
        "store opened"
    );
    let engine = Engine::new(config.clone(), store.clone())?;

    let addr = config.listen_addr()?;
    let workers = match config.server.workers {
        0 => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        n => n,
    };
    let app_engine = web::Data::new(engine.clone());
    let app_prometheus = prometheus.map(web::Data::new);
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .app_data(app_engine.clone())
            .app_data(web::PayloadConfig::new(crate::api::MAX_API_BODY))
            .configure(crate::api::configure)
            .default_service(web::to(crate::api::not_found));
        if let Some(p) = &app_prometheus {
            app = app.app_data(p.clone());
        }
        app
    })
    .workers(workers)
    // A client must send its request head within this long (slow-loris senders are cut off;
    // the body has `ingress.body_timeout`).
    .client_request_timeout(std::time::Duration::from_secs(5))
    .disable_signals()
    .shutdown_timeout(5)
    .bind(addr)
    .map_err(|source| ServeError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let bound = server.addrs().first().copied().unwrap_or(addr);
    let server = server.run();
    let handle = server.handle();
    let server_task = actix_web::rt::spawn(server);
    println!("fasthook listening on http://{bound}");

    if let Some((team, key)) = engine.bootstrap_auth().await? {
        println!("created team {team} with an API key; it is shown only this once:");
        println!("FASTHOOK_TEAM_ID={team}");
        println!("FASTHOOK_API_KEY={key}");
    }
    engine.recover().await?;
    tracing::info!(%bound, "ready");
    actix_web::rt::spawn(watch_disk(store.clone(), bound));
    actix_web::rt::spawn(crate::engine::retention::run(
        store.clone(),
        config.retention.clone(),
    ));
    if let Some(path) = config.source.clone() {
        actix_web::rt::spawn(watch_engine_pause(
            engine.clone(),
            path,
            config.engine.paused,
            config.engine.config_poll_interval,
        ));
    }

    wait_for_signal().await;
    tracing::info!("shutting down: intake stopped, waiting for attempts in flight");
    handle.stop(true).await;
    let _ = server_task.await;
    engine.shutdown(config.server.shutdown_grace).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Applies `[engine] paused` from the config file while running. Only a change of the file's
/// value is applied, so an API pause is not undone by a file that still says `false`: the
/// last change, from either side, wins.
async fn watch_engine_pause(
    engine: Engine,
    path: std::path::PathBuf,
    mut last: bool,
    every: std::time::Duration,
) {
    loop {
        tokio::time::sleep(every).await;
        let read_path = path.clone();
        let text = match tokio::task::spawn_blocking(move || std::fs::read_to_string(read_path))
            .await
        {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the config file; engine pause unchanged");
                continue;
            }
            Err(_) => continue,
        };
        match Config::parse(&text) {
            Ok(c) if c.engine.paused != last => {
                match engine
                    .set_paused(c.engine.paused, crate::domain::PauseSource::Config)
                    .await
                {
                    Ok(_) => last = c.engine.paused,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot store the engine pause; trying again")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "config file does not parse; engine pause unchanged")
            }
        }
    }
}

/// While the store cannot write (a full or failing disk), probes for space every second.
/// When it is back: the body log writes again by itself, so the failure is just cleared; sled
/// stays failed until reopened, so the gateway restarts in place (same process, same address,
/// same arguments) and recovers exactly as after a crash. Nothing answered 200 was unsynced.
async fn watch_disk(store: Store, bound: std::net::SocketAddr) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let health = store.disk_health();
        if !health.failing() && !health.needs_reopen() {
            continue;
        }
        let probe = store.clone();
        if !matches!(
            tokio::task::spawn_blocking(move || probe.space_returned()).await,
            Ok(true)
        ) {
            continue;
        }
        if !health.needs_reopen() {
            health.clear_failing();
            tracing::warn!("the data directory takes writes again");
            continue;
        }
        tracing::warn!(%bound, "the data directory takes writes again; restarting in place to reopen the store");
        let error = restart_in_place(bound);
        tracing::error!(%error, "cannot restart in place; restart the gateway to reopen the store");
        return;
    }
}

/// Replaces this process with a fresh start of the same binary and arguments, listening where
/// this one did. Returns only if that fails.
fn restart_in_place(bound: std::net::SocketAddr) -> std::io::Error {
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        match std::env::current_exe() {
            Ok(exe) => std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("FASTHOOK_LISTEN", bound.to_string())
                .exec(),
            Err(e) => e,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = bound;
        std::io::Error::other("restarting in place needs a unix exec")
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
