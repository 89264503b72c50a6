//! Start-up, the HTTP endpoints, and the drain on SIGTERM or SIGINT.
//!
//! `main` only calls [`main`]. The actors are wired here: the tailer's supervisor starts
//! first so that its address can be handed to the forwarder for acknowledgements. The
//! HTTP server (one worker) serves `/health` and `/metrics`. On a signal the tailer stops
//! reading, the forwarder closes its open batch, and the process waits, up to the
//! shutdown grace, for every batch to be acknowledged and checkpointed before it exits.

use std::cell::RefCell;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Addr, Supervisor};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context as _;
use prometheus::Registry;
use serde_json::json;
use shared::config::ProcessEnv;
use shared::http::{self, HttpMetrics};
use shared::startup::{self, Failure, Program, Settings};

use crate::checkpoint::{CheckpointError, Checkpoints, CHECKPOINT_FILE};
use crate::config::{SidecarConfig, SETTINGS_HELP, STATE_DIR};
use crate::enrich::Splicer;
use crate::enricher::{Enricher, PieceLimits};
use crate::fault::Fault;
use crate::files::{FileSet, ReadSettings};
use crate::forwarder::{Flush, Forwarder, ForwarderSettings, Outstanding};
use crate::metrics::{Metrics, Readiness};
use crate::tailer::{SaveCheckpoints, StopReading, Tailer, Timing};

pub const PROGRAM: &str = "logging-sidecar";

/// The whole life of the binary; `shared::startup` does what every binary does.
pub fn main() -> ExitCode {
    let program = Program {
        name: PROGRAM,
        about: "Tails a log file and forwards each record, enriched, to the log aggregator.",
        settings_help: SETTINGS_HELP,
    };
    startup::main(
        &program,
        std::env::args().skip(1),
        || SidecarConfig::from_env(&ProcessEnv),
        |config| async move {
            check_state_dir(&config.state_dir).map_err(|e| Failure::Config {
                var: STATE_DIR,
                value: config.state_dir.display().to_string(),
                reason: e.to_string(),
            })?;
            run(config).await.map_err(Failure::from)
        },
    )
}

/// Exit status after a panic; a panic exits so that a restart resumes from the last
/// checkpoint (see `shared::startup::exit_on_panic`).
pub const EXIT_PANIC: i32 = startup::EXIT_PANIC;

impl Settings for SidecarConfig {
    fn listen_addr(&self) -> SocketAddr {
        self.listen
    }
}

/// The state directory must exist (it is created) and be writable, or checkpoints fail.
fn check_state_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let probe = dir.join(".logging-sidecar-write-test");
    fs::write(&probe, b"ok")?;
    fs::remove_file(&probe)
}

/// Loads the checkpoints; a corrupt file is reported, kept aside, and reading restarts.
fn load_checkpoints(state_dir: &Path) -> Checkpoints {
    match Checkpoints::load(state_dir) {
        Ok(cp) => cp,
        Err(e) => {
            let aside = state_dir.join(format!("{CHECKPOINT_FILE}.corrupt"));
            let kept = matches!(e, CheckpointError::Corrupt { .. })
                && fs::rename(state_dir.join(CHECKPOINT_FILE), &aside).is_ok();
            log::warn!(
                error = e.to_string().as_str(),
                kept_as = if kept { aside.display().to_string() } else { String::new() }.as_str();
                "The checkpoint file is unusable; every file is read from its start, and the aggregator drops the lines it already holds."
            );
            Checkpoints::empty(state_dir)
        }
    }
}

/// Descriptors kept for other uses than log files: sockets, the checkpoint file, the
/// watch, the standard streams.
const DESCRIPTOR_SPARE: u64 = 64;

/// The soft limit of open file descriptors of this process, from `/proc/self/limits`
/// (no unsafe call needed); `None` when unknown or unlimited.
fn descriptor_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn run(config: SidecarConfig) -> anyhow::Result<()> {
    let registry = Registry::new();
    let metrics = Metrics::register(&registry).context("registering metrics")?;
    let http_metrics = HttpMetrics::register(&registry, PROGRAM).context("registering metrics")?;
    let readiness = Arc::new(Readiness::default());
    for warning in &config.warnings {
        log::warn!("{warning}");
    }
    if let Some(soft) = descriptor_limit() {
        if config.max_open_files as u64 + DESCRIPTOR_SPARE > soft {
            log::warn!(max_open_files = config.max_open_files, descriptor_limit = soft; "MAX_OPEN_FILES leaves too few of the process's file descriptors (ulimit -n) for sockets and the checkpoint file; opening files may fail before the limit is reached. Lower MAX_OPEN_FILES or raise the descriptor limit.");
        }
    }
    if config.service_name == crate::config::DEFAULT_SERVICE_NAME {
        log::warn!(
            "SERVICE_NAME is not set; records are marked as forwarded for \"unknown-service\"."
        );
    }

    let files = FileSet::new(
        &config.log_path,
        ReadSettings {
            read_chunk_bytes: config.read_chunk_bytes,
            max_line_bytes: config.max_line_bytes,
            partial_line_timeout: config.partial_line_timeout,
            rotate_wait: config.rotate_wait,
            release_unacked_after: config.release_unacked_after,
            max_open_files: config.max_open_files,
        },
        load_checkpoints(&config.state_dir),
    );
    let settings = ForwarderSettings {
        url: config.aggregator_url.clone(),
        token: config.aggregator_token.clone(),
        gzip: config.gzip,
        batch_max_records: config.batch_max_records,
        batch_max_bytes: config.batch_max_bytes,
        batch_linger: config.batch_linger,
        max_in_flight_batches: config.max_in_flight_batches,
        request_timeout: config.request_timeout,
        retry_initial: config.retry_initial,
        retry_max: config.retry_max,
    };
    let splicer = Arc::new(Splicer::new(
        &config.service_name,
        &config.forwarded_by(),
        &config.environment,
    ));
    let piece_limits = PieceLimits {
        max_records: config.batch_max_records,
        max_bytes: config.batch_max_bytes,
    };

    // The supervisor's factory must be 'static: the forwarder's address comes back
    // through a shared slot.
    let forwarder_addr: Rc<RefCell<Option<Addr<Forwarder>>>> = Rc::default();
    let tailer = {
        let (metrics, readiness) = (metrics.clone(), readiness.clone());
        let faults = config.faults.clone();
        let timing = Timing {
            mode: config.watch_mode,
            poll_interval: config.poll_interval,
            rescan_interval: config.rescan_interval,
            checkpoint_interval: config.checkpoint_interval,
        };
        let forwarder_slot = forwarder_addr.clone();
        Supervisor::start(move |ctx: &mut actix::Context<Tailer>| {
            let acks_to = actix::AsyncContext::address(ctx).recipient();
            let forwarder = {
                let (m, r, f) = (
                    metrics.clone(),
                    readiness.clone(),
                    Fault::new(faults.forwarder),
                );
                let splicer = splicer.clone();
                Supervisor::start(move |_| Forwarder::new(settings, splicer, acks_to, f, m, r))
            };
            *forwarder_slot.borrow_mut() = Some(forwarder.clone());
            let enricher = {
                let (m, f) = (metrics.clone(), Fault::new(faults.enricher));
                Supervisor::start(move |_| Enricher::new(splicer, piece_limits, forwarder, f, m))
            };
            Tailer::new(
                files,
                enricher,
                timing,
                Fault::new(faults.tailer),
                metrics,
                readiness,
            )
        })
    };
    let forwarder = forwarder_addr
        .take()
        .context("the forwarder did not start")?;

    let service = config.forwarded_by();
    let health_readiness = readiness.clone();
    let registry = web::Data::new(registry);
    let http_metrics = web::Data::new(http_metrics);
    let server = HttpServer::new(move || {
        let readiness = health_readiness.clone();
        let service = service.clone();
        App::new()
            .app_data(registry.clone())
            .app_data(http_metrics.clone())
            .wrap(from_fn(http::observe))
            .route(
                "/health",
                web::get().to(move || {
                    let answer = match readiness.check() {
                        Ok(()) => HttpResponse::Ok().json(json!({
                            "status": "healthy", "service": service
                        })),
                        Err(reason) => HttpResponse::ServiceUnavailable().json(json!({
                            "status": "starting", "service": service, "reason": reason
                        })),
                    };
                    async move { answer }
                }),
            )
            .route("/metrics", web::get().to(http::metrics_endpoint))
            .default_service(web::to(http::not_found))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(config.listen)
    .with_context(|| format!("binding LISTEN_ADDR={}", config.listen))?;
    for addr in server.addrs() {
        log::info!(
            log_path = config.log_path.as_str(),
            state_dir = config.state_dir.display().to_string().as_str(),
            aggregator_url = config.aggregator_url.as_str();
            "Listening on http://{addr}."
        );
    }
    let server = server.run();
    let handle = server.handle();
    actix_rt::spawn(server);

    let signal = startup::signal()
        .await
        .context("installing the signal handlers")?;
    log::info!(signal = signal, grace_ms = config.shutdown_grace.as_millis() as u64; "Draining: delivering what was read before stopping.");
    drain(&tailer, &forwarder, config.shutdown_grace).await;
    handle.stop(true).await;
    Ok(())
}

/// Stops reading, then waits for the forwarder to empty, then saves the checkpoints.
async fn drain(tailer: &Addr<Tailer>, forwarder: &Addr<Forwarder>, grace: Duration) {
    let deadline = Instant::now() + grace;
    let _ = tailer.send(StopReading).await;
    let _ = forwarder.send(Flush).await;
    loop {
        match forwarder.send(Outstanding).await {
            Ok(0) | Err(_) => break,
            Ok(n) if Instant::now() >= deadline => {
                log::warn!(batches = n; "The shutdown grace ran out with batches unacknowledged; they are read again at the next start.");
                break;
            }
            Ok(_) => actix_rt::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let _ = tailer.send(SaveCheckpoints).await;
}
