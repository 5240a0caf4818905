//! The operator's endpoint: `/healthz` (the loop is alive; degraded while
//! calendars are stale or the last configuration edit was rejected),
//! `/readyz` (the first plan is loaded) and `/metrics` (Prometheus). Served
//! on the async runtime; the CPU-bound planning runs elsewhere, so these
//! answer while 10,000 users are re-planned. IO.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// What `/healthz` reports, kept up to date by the loop.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HealthReport {
    /// "ok", "degraded", or "stalled" (the loop gave no sign of life).
    pub status: &'static str,
    /// When calendars were last refreshed.
    pub last_refresh: Option<DateTime<Utc>>,
    /// When the last pass ended.
    pub last_pass: Option<DateTime<Utc>>,
    /// Calendars whose last read failed (their last good copy is in use).
    pub stale_calendars: usize,
    /// Reads that failed in the last refresh.
    pub fetch_errors: usize,
    /// Why the last configuration edit was rejected (empty when it was not).
    pub config_errors: Vec<String>,
    /// A shared state database: "ok" or "unreachable" (writes stop when
    /// the leases lapse); empty for a store of this instance's own.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub database: &'static str,
}

/// `/healthz` answers 503 when the loop has given no sign of life (a wake,
/// a write) for this long: it is stuck, and a liveness probe should
/// restart it. Longer than any sleep (the loop wakes at least every 30 s)
/// and than a write's retries.
pub const STALLED_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Shared between the loop and the endpoint.
pub struct Health {
    report: Mutex<HealthReport>,
    ready: AtomicBool,
    alive: AtomicBool,
    /// The loop's last sign of life.
    beat: Mutex<std::time::Instant>,
    /// The oldest last good calendar copy, for the staleness gauge.
    oldest_good: Mutex<Option<DateTime<Utc>>>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
}

impl Health {
    /// Not ready yet, alive.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Health> {
        Arc::new(Health {
            report: Mutex::new(HealthReport {
                status: "ok",
                ..HealthReport::default()
            }),
            ready: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            beat: Mutex::new(std::time::Instant::now()),
            oldest_good: Mutex::new(None),
            metrics,
        })
    }

    /// Updates the report.
    pub fn update(&self, f: impl FnOnce(&mut HealthReport)) {
        let mut r = self.report.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut r);
        r.status = if r.stale_calendars > 0
            || !r.config_errors.is_empty()
            || r.database == "unreachable"
        {
            "degraded"
        } else {
            "ok"
        };
    }

    /// The current report.
    pub fn report(&self) -> HealthReport {
        self.report
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The first plan is loaded.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// The loop is alive.
    pub fn beat(&self) {
        *self.beat.lock().unwrap_or_else(|e| e.into_inner()) = std::time::Instant::now();
    }

    /// `true` while the loop runs and gave a sign of life lately.
    fn live(&self) -> bool {
        let last = *self.beat.lock().unwrap_or_else(|e| e.into_inner());
        self.alive.load(Ordering::SeqCst) && last.elapsed() < STALLED_AFTER
    }

    /// The loop ended (or died).
    pub fn set_dead(&self) {
        self.alive.store(false, Ordering::SeqCst);
    }

    /// Records the oldest last good calendar copy.
    pub fn set_oldest_good(&self, at: Option<DateTime<Utc>>) {
        *self.oldest_good.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    fn metrics_text(&self) -> String {
        let oldest = *self.oldest_good.lock().unwrap_or_else(|e| e.into_inner());
        let age = oldest.map_or(0.0, |t| {
            (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
        });
        self.metrics.set_stale(age);
        self.metrics.encode()
    }
}

async fn healthz(State(h): State<Arc<Health>>) -> Response {
    let mut report = h.report();
    let code = if h.live() {
        StatusCode::OK
    } else {
        report.status = "stalled";
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(report)).into_response()
}

async fn readyz(State(h): State<Arc<Health>>) -> Response {
    if h.ready.load(Ordering::SeqCst) && h.live() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(h): State<Arc<Health>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        h.metrics_text(),
    )
        .into_response()
}

/// Binds `addr` and serves until `stop` is cancelled; returns the bound
/// address (port 0 picks one).
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(message = "The health endpoint stopped.", error = %e);
        }
    });
    Ok(bound)
}

impl crate::engine::Observer for Health {
    fn writes_started(&self, n: usize) {
        self.beat();
        self.metrics.writes_started(n);
    }
    fn written(
        &self,
        user: &str,
        result: &Result<(), crate::graph::client::OpError>,
        due: Option<DateTime<Utc>>,
    ) {
        self.beat();
        self.metrics.written(user, result, due);
    }
    fn writes_finished(&self) {
        self.beat();
        self.metrics.writes_finished();
    }
}
