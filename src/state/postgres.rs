//! The shared state store: PostgreSQL, for several instances of `calstatus
//! run` (and the tools) on one database. The same records, journal and UPN
//! cache as SQLite, plus the leases that make several writers safe:
//!
//! - People are divided into [`SHARDS`](super::SHARDS) shards; an instance
//!   holds some of them under leases that expire `lease_ttl` after its last
//!   heartbeat, *by the database's clock* (instances' clocks never meet).
//!   Each heartbeat renews what it holds, counts the live instances and
//!   takes (or gives back) shards towards an even share. A shard that
//!   changes holder gets a new epoch.
//! - Every intent is fenced: it is recorded, in one transaction, only while
//!   each shard it needs is still held by this instance with the same epoch
//!   and has not expired; the rows are locked, so a takeover waits for the
//!   commit and then sees the intent.
//! - Schema migrations are versioned and run by one instance under an
//!   advisory lock; a binary that finds a newer schema refuses to start.
//!
//! Connections come from a small pool (deadpool) over `tokio-postgres`,
//! with TLS by rustls (no OpenSSL). IO.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::config::SslMode;

use super::{
    Fence, Held, Intent, JournalEntry, JournalOutcome, Lease, Observation, Record, SHARDS, Spend,
    StateError, StateStore, WriteResult,
};
use crate::config::PgTls;
use crate::reconcile::Decision;

/// Migrations, in order; index + 1 is the schema version they produce.
const MIGRATIONS: &[&str] = &[
    // 1: records, journal, UPN cache, shards and instances.
    "CREATE TABLE users (
        user_id TEXT PRIMARY KEY,
        message TEXT,
        expiry TIMESTAMPTZ,
        occurrences TEXT NOT NULL DEFAULT '[]',
        written_at TIMESTAMPTZ,
        pending_message TEXT,
        pending_expiry TIMESTAMPTZ,
        pending_at TIMESTAMPTZ,
        saved_message TEXT,
        saved_at TIMESTAMPTZ,
        failures BIGINT NOT NULL DEFAULT 0,
        last_error TEXT
     );
     CREATE TABLE journal (
        id BIGSERIAL PRIMARY KEY,
        pass_id TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL,
        user_id TEXT NOT NULL,
        decision TEXT NOT NULL,
        message TEXT,
        expiry TIMESTAMPTZ,
        outcome TEXT NOT NULL,
        detail TEXT,
        origin TEXT,
        origin_id BIGINT,
        UNIQUE (origin, origin_id)
     );
     CREATE INDEX journal_user ON journal (user_id, id);
     CREATE TABLE upn_cache (upn TEXT PRIMARY KEY, object_id TEXT NOT NULL, resolved_at TIMESTAMPTZ NOT NULL);
     CREATE TABLE shards (
        shard INT PRIMARY KEY,
        holder TEXT,
        epoch BIGINT NOT NULL DEFAULT 0,
        expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity'
     );
     INSERT INTO shards (shard) SELECT generate_series(0, 63);
     CREATE TABLE instances (
        holder TEXT PRIMARY KEY,
        heartbeat_at TIMESTAMPTZ NOT NULL,
        released BOOLEAN NOT NULL DEFAULT false,
        spent INT NOT NULL DEFAULT 0
     );",
];

/// The schema version this binary writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock migrations run under.
/// A shard given back for a newcomer cannot be taken for this long: a
/// write that passed the giver's gate just before has landed by then.
pub const HAND_OVER: Duration = Duration::from_secs(2);

const MIGRATION_LOCK: i64 = 0x6361_6c73_7461_7475; // "calstatu"

/// How to reach the database.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db` (no password).
    pub url: String,
    /// The password (PGPASSWORD, password_env or password_file).
    pub password: Option<crate::graph::Secret>,
    /// TLS mode.
    pub tls: PgTls,
    /// CA certificates (PEM) for `verify-full`; the system's when absent.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &self.url)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// The shared store. Cheap to clone (one pool).
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    /// The URL, for messages (never holds a password).
    url: Arc<str>,
}

/// What PostgreSQL said (`tokio_postgres::Error` alone prints "db error").
pub fn pg_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => crate::text::error_chain(e),
    }
}

fn pg(what: &'static str) -> impl Fn(tokio_postgres::Error) -> StateError {
    move |source| StateError::Postgres { what, source }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StateError {
    StateError::Unreachable(e.to_string())
}

impl PgStore {
    /// Connects (checking the server answers), migrates under an advisory
    /// lock, and refuses a schema newer than this binary's.
    pub async fn connect(options: &PgOptions) -> Result<PgStore, StateError> {
        let store = PgStore::connect_only(options)?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects to read only (`sync --dry-run`): nothing is migrated; `None`
    /// when the database holds no calstatus state of this version yet.
    pub async fn connect_read_only(options: &PgOptions) -> Result<Option<PgStore>, StateError> {
        let store = PgStore::connect_only(options)?;
        let c = store.client().await?;
        let exists: bool = c
            .query_one("SELECT to_regclass('calstatus_schema') IS NOT NULL", &[])
            .await
            .map_err(pg("reading the schema version"))?
            .get(0);
        drop(c);
        if !exists {
            return Ok(None);
        }
        let version = store.schema_version().await?;
        if version > SCHEMA_VERSION {
            return Err(StateError::TooNew {
                path: store.url.to_string().into(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        Ok((version == SCHEMA_VERSION).then_some(store))
    }

    /// The pool, without a round trip yet.
    fn connect_only(options: &PgOptions) -> Result<PgStore, StateError> {
        let mut config: tokio_postgres::Config =
            options.url.parse().map_err(|e: tokio_postgres::Error| {
                StateError::Unreachable(format!("invalid url: {e}"))
            })?;
        if let Some(p) = &options.password {
            config.password(p.expose());
        }
        config.ssl_mode(match options.tls {
            PgTls::Disable => SslMode::Disable,
            PgTls::Prefer => SslMode::Prefer,
            PgTls::Require | PgTls::VerifyFull => SslMode::Require,
        });
        config.connect_timeout(Duration::from_secs(5));
        // A peer that vanished (a partition, a paused VM) is noticed in
        // about a minute, not hours; and an instance stopped in the middle
        // of a transaction cannot keep its shard rows locked for long.
        config.keepalives_idle(Duration::from_secs(30));
        config.options("-c idle_in_transaction_session_timeout=10s");
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(options)?);
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(8)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StateError::Unreachable(e.to_string()))?;
        Ok(PgStore {
            pool,
            url: options.url.as_str().into(),
        })
    }

    /// The database's URL (no password).
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StateError> {
        self.pool.get().await.map_err(pool_error)
    }

    async fn migrate(&self) -> Result<(), StateError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg("migrating"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg("locking the migrations"))?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS calstatus_schema (version BIGINT NOT NULL)")
            .await
            .map_err(pg("migrating"))?;
        let version: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM calstatus_schema",
                &[],
            )
            .await
            .map_err(pg("reading the schema version"))?
            .get(0);
        if version > SCHEMA_VERSION {
            return Err(StateError::TooNew {
                path: self.url.to_string().into(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.batch_execute(sql).await.map_err(pg("migrating"))?;
            tx.execute(
                "INSERT INTO calstatus_schema (version) VALUES ($1)",
                &[&(i as i64 + 1)],
            )
            .await
            .map_err(pg("migrating"))?;
        }
        tx.commit().await.map_err(pg("migrating"))
    }

    /// The schema version of the database.
    pub async fn schema_version(&self) -> Result<i64, StateError> {
        let c = self.client().await?;
        Ok(c.query_one(
            "SELECT COALESCE(MAX(version), 0) FROM calstatus_schema",
            &[],
        )
        .await
        .map_err(pg("reading the schema version"))?
        .get(0))
    }

    /// Copies an SQLite state (records, saved personal messages, journal,
    /// UPN cache) into this database. Idempotent: records and the cache are
    /// upserted, journal lines are keyed by their SQLite row. Returns
    /// (records, journal lines, cached UPNs) copied.
    pub async fn import(
        &self,
        from: &super::SqliteStore,
    ) -> Result<(usize, usize, usize), StateError> {
        let dump = from.dump().await?;
        let origin = from.path().display().to_string();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg("importing"))?;
        for r in &dump.records {
            tx.execute(
                "INSERT INTO users (user_id, message, expiry, occurrences, pending_message, pending_expiry, saved_message, failures)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (user_id) DO UPDATE SET message = $2, expiry = $3, occurrences = $4,
                    pending_message = $5, pending_expiry = $6, saved_message = $7, failures = $8",
                &[
                    &r.user_id,
                    &r.message,
                    &r.expiry,
                    &r.occurrences,
                    &r.pending_message,
                    &r.pending_expiry,
                    &r.saved_message,
                    &r.failures,
                ],
            )
            .await
            .map_err(pg("importing records"))?;
        }
        for (id, at, j) in &dump.journal {
            tx.execute(
                "INSERT INTO journal (pass_id, at, user_id, decision, message, expiry, outcome, detail, origin, origin_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (origin, origin_id) DO NOTHING",
                &[
                    &j.pass_id,
                    at,
                    &j.user_id,
                    &j.decision.map_or("adopt", Decision::as_str),
                    &j.message,
                    &j.expiry,
                    &j.outcome.as_str(),
                    &j.detail,
                    &origin,
                    id,
                ],
            )
            .await
            .map_err(pg("importing the journal"))?;
        }
        for (upn, id, at) in &dump.upns {
            tx.execute(
                "INSERT INTO upn_cache (upn, object_id, resolved_at) VALUES ($1, $2, $3)
                 ON CONFLICT (upn) DO UPDATE SET object_id = $2, resolved_at = $3",
                &[upn, id, at],
            )
            .await
            .map_err(pg("importing the UPN cache"))?;
        }
        tx.commit().await.map_err(pg("importing"))?;
        Ok((dump.records.len(), dump.journal.len(), dump.upns.len()))
    }
}

/// The rustls configuration for a TLS mode: verified against the CA file
/// (or the system's roots) for `verify-full`; otherwise encrypted without
/// verifying the certificate, as libpq's `prefer` and `require` do.
fn tls_config(options: &PgOptions) -> Result<rustls::ClientConfig, StateError> {
    crate::calendar::source::install_crypto();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StateError::Unreachable(format!("TLS: {e}")))?;
    if options.tls != PgTls::VerifyFull {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth());
    }
    let mut roots = rustls::RootCertStore::empty();
    match &options.ca_file {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                StateError::Unreachable(format!("cannot read ca_file {}: {e}", file.display()))
            })?;
            for p in pem::parse_many(&text).unwrap_or_default() {
                if p.tag() == "CERTIFICATE" {
                    let _ = roots.add(rustls::pki_types::CertificateDer::from(p.into_contents()));
                }
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(StateError::Unreachable(
            "tls = \"verify-full\" but no CA certificate was found (ca_file)".into(),
        ));
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Accepts any server certificate but checks the handshake's signatures:
/// encryption without authentication (`prefer`, `require`).
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Records the writes Graph accepted: what is now published (ours only
/// for a set), the saved personal message dropped after a restore, the
/// failure count reset.
async fn record_applied(
    tx: &tokio_postgres::Transaction<'_>,
    at: DateTime<Utc>,
    ok: &[&WriteResult],
) -> Result<(), StateError> {
    if !ok.is_empty() {
        let ours = |i: &Intent| i.decision == Decision::Set;
        let users: Vec<&str> = ok.iter().map(|o| o.intent.user.as_str()).collect();
        let messages: Vec<Option<&str>> = ok
            .iter()
            .map(|o| o.intent.message.as_deref().filter(|_| ours(&o.intent)))
            .collect();
        let expiries: Vec<Option<DateTime<Utc>>> = ok
            .iter()
            .map(|o| o.intent.expiry.filter(|_| ours(&o.intent)))
            .collect();
        let occurrences: Vec<&str> = ok.iter().map(|o| o.intent.occurrences.as_str()).collect();
        let restored: Vec<bool> = ok
            .iter()
            .map(|o| o.intent.decision == Decision::Restore)
            .collect();
        tx.execute(
            "UPDATE users SET message = t.m, expiry = t.e, occurrences = t.o, written_at = $1,
                pending_message = NULL, pending_expiry = NULL, pending_at = NULL,
                saved_message = CASE WHEN t.r THEN NULL ELSE users.saved_message END,
                failures = 0, last_error = NULL
             FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::bool[]) AS t(u, m, e, o, r)
             WHERE users.user_id = t.u",
            &[&at, &users, &messages, &expiries, &occurrences, &restored],
        )
        .await
        .map_err(pg("recording outcomes"))?;
    }
    Ok(())
}

/// Records the writes that failed: nothing pending, one more failure and
/// its reason (retried next pass).
async fn record_failed(
    tx: &tokio_postgres::Transaction<'_>,
    failed: &[&WriteResult],
) -> Result<(), StateError> {
    if !failed.is_empty() {
        let users: Vec<&str> = failed.iter().map(|o| o.intent.user.as_str()).collect();
        let errors: Vec<&str> = failed
            .iter()
            .map(|o| o.result.as_ref().err().map_or("", String::as_str))
            .collect();
        tx.execute(
            "UPDATE users SET pending_message = NULL, pending_expiry = NULL, pending_at = NULL,
                failures = failures + 1, last_error = t.err
             FROM unnest($1::text[], $2::text[]) AS t(u, err) WHERE users.user_id = t.u",
            &[&users, &errors],
        )
        .await
        .map_err(pg("recording outcomes"))?;
    }
    Ok(())
}

/// One journal line per outcome, in order, in one statement.
async fn journal_outcomes(
    tx: &tokio_postgres::Transaction<'_>,
    pass_id: &str,
    at: DateTime<Utc>,
    outcomes: &[WriteResult],
) -> Result<(), StateError> {
    let users: Vec<&str> = outcomes.iter().map(|o| o.intent.user.as_str()).collect();
    let decisions: Vec<&str> = outcomes
        .iter()
        .map(|o| o.intent.decision.as_str())
        .collect();
    let messages: Vec<Option<&str>> = outcomes
        .iter()
        .map(|o| o.intent.message.as_deref())
        .collect();
    let expiries: Vec<Option<DateTime<Utc>>> = outcomes.iter().map(|o| o.intent.expiry).collect();
    let results: Vec<&str> = outcomes
        .iter()
        .map(|o| {
            if o.result.is_ok() {
                JournalOutcome::Ok.as_str()
            } else {
                JournalOutcome::Failed.as_str()
            }
        })
        .collect();
    let details: Vec<Option<&str>> = outcomes
        .iter()
        .map(|o| o.result.as_ref().err().map(String::as_str))
        .collect();
    tx.execute(
        "INSERT INTO journal (pass_id, at, user_id, decision, message, expiry, outcome, detail)
         SELECT $1, $2, u, d, m, e, o, x
         FROM unnest($3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::text[])
            WITH ORDINALITY AS t(u, d, m, e, o, x, n)
         ORDER BY n",
        &[
            &pass_id, &at, &users, &decisions, &messages, &expiries, &results, &details,
        ],
    )
    .await
    .map_err(pg("recording outcomes"))?;
    Ok(())
}

/// Marks `holder` alive with what it spent in the budget window, forgets
/// instances gone for a day, and returns what the others spent: a stopped
/// instance's last report still counts until a window after it (Graph's
/// window remembers it).
async fn report_alive(
    tx: &tokio_postgres::Transaction<'_>,
    holder: &str,
    spend: Spend,
) -> Result<i64, StateError> {
    let spent = i32::try_from(spend.ops).unwrap_or(i32::MAX);
    tx.execute(
        "INSERT INTO instances (holder, heartbeat_at, spent) VALUES ($1, now(), $2)
         ON CONFLICT (holder) DO UPDATE SET heartbeat_at = now(), spent = $2, released = false",
        &[&holder, &spent],
    )
    .await
    .map_err(pg("renewing leases"))?;
    let others_spent: i64 = tx
        .query_one(
            "SELECT coalesce(sum(spent), 0)::BIGINT FROM instances
             WHERE holder <> $1 AND heartbeat_at > now() - make_interval(secs => $2)",
            &[&holder, &seconds(spend.window)],
        )
        .await
        .map_err(pg("reading the budget spent"))?
        .get(0);
    tx.execute(
        "DELETE FROM instances WHERE heartbeat_at < now() - interval '1 day'",
        &[],
    )
    .await
    .map_err(pg("renewing leases"))?;
    Ok(others_spent)
}

/// Renews the leases `holder` still has (an expired shard is lost, even if
/// nobody took it): shard → epoch.
async fn renew(
    tx: &tokio_postgres::Transaction<'_>,
    holder: &str,
    ttl_s: f64,
) -> Result<BTreeMap<u16, i64>, StateError> {
    let renewed = tx
        .query(
            "UPDATE shards SET expires_at = now() + make_interval(secs => $2)
             WHERE holder = $1 AND expires_at > now() RETURNING shard, epoch",
            &[&holder, &ttl_s],
        )
        .await
        .map_err(pg("renewing leases"))?;
    Ok(renewed
        .iter()
        .map(|r| (r.get::<_, i32>(0) as u16, r.get::<_, i64>(1)))
        .collect())
}

/// The instances alive within a lease time, in a stable order (each
/// instance's rank decides its fair share).
async fn live_instances(
    tx: &tokio_postgres::Transaction<'_>,
    ttl_s: f64,
) -> Result<Vec<String>, StateError> {
    Ok(tx
        .query(
            "SELECT holder FROM instances
             WHERE NOT released AND heartbeat_at > now() - make_interval(secs => $1) ORDER BY holder",
            &[&ttl_s],
        )
        .await
        .map_err(pg("counting instances"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Gives the shards over `fair` back for a newcomer (highest numbers
/// first). They are not takeable for [`HAND_OVER`]: a write of ours that
/// passed the gate just before lands before the newcomer reads the status.
async fn give_back(
    tx: &tokio_postgres::Transaction<'_>,
    holder: &str,
    shards: &mut BTreeMap<u16, i64>,
    fair: usize,
) -> Result<(), StateError> {
    let surplus: Vec<i32> = shards
        .keys()
        .rev()
        .take(shards.len() - fair)
        .map(|s| i32::from(*s))
        .collect();
    tx.execute(
        "UPDATE shards SET holder = NULL, expires_at = now() + make_interval(secs => $3)
         WHERE holder = $1 AND shard = ANY($2)",
        &[&holder, &surplus, &seconds(HAND_OVER)],
    )
    .await
    .map_err(pg("giving shards back"))?;
    for s in surplus {
        shards.remove(&(s as u16));
    }
    Ok(())
}

/// Takes expired shards up to `fair`, each under a new epoch; returns those
/// taken from another instance (a takeover, not a first claim).
async fn take_free(
    tx: &tokio_postgres::Transaction<'_>,
    holder: &str,
    ttl_s: f64,
    shards: &mut BTreeMap<u16, i64>,
    fair: usize,
) -> Result<Vec<u16>, StateError> {
    let want = (fair - shards.len()) as i64;
    let rows = tx
        .query(
            "WITH free AS (
                SELECT shard, holder AS previous FROM shards
                WHERE expires_at <= now()
                ORDER BY shard LIMIT $3 FOR UPDATE SKIP LOCKED
             )
             UPDATE shards s SET holder = $1, epoch = s.epoch + 1,
                expires_at = now() + make_interval(secs => $2)
             FROM free WHERE s.shard = free.shard
             RETURNING s.shard, s.epoch, free.previous",
            &[&holder, &ttl_s, &want],
        )
        .await
        .map_err(pg("taking shards"))?;
    let mut taken_over = Vec::new();
    for r in &rows {
        let shard = r.get::<_, i32>(0) as u16;
        shards.insert(shard, r.get(1));
        if r.get::<_, Option<String>>(2).is_some_and(|p| p != holder) {
            taken_over.push(shard);
        }
    }
    Ok(taken_over)
}

/// The fair share of shards of the instance ranked `rank` (by name) among
/// `live` instances: an even split, the first ones taking the remainder,
/// so that the shares add up to exactly [`SHARDS`].
fn fair_share(live: usize, rank: usize) -> usize {
    let live = live.max(1);
    let n = usize::from(SHARDS);
    n / live + usize::from(rank < n % live)
}

/// Seconds, for `make_interval(secs => …)`.
fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A holder's shards, given back when a one-shot pass ends.
struct PassLease {
    store: PgStore,
    holder: String,
}

impl Drop for PassLease {
    fn drop(&mut self) {
        let (store, holder) = (self.store.clone(), self.holder.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = store.release(&holder).await;
            });
        }
    }
}

#[async_trait]
impl StateStore for PgStore {
    /// A one-shot pass (`calstatus sync`) takes every shard, and only when
    /// no instance holds any: it cannot run beside `calstatus run` on the
    /// same database.
    async fn acquire_lease(&self) -> Result<Lease, StateError> {
        let holder = format!("sync-{}", uuid::Uuid::new_v4().simple());
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg("taking the pass lease"))?;
        let busy: i64 = tx
            .query_one(
                "SELECT count(*) FROM shards WHERE holder IS NOT NULL AND expires_at > now()",
                &[],
            )
            .await
            .map_err(pg("taking the pass lease"))?
            .get(0);
        if busy > 0 {
            return Err(StateError::InUse(format!(
                "calstatus instances hold {busy} shard(s) of {}; a one-shot pass cannot run beside them (stop them, or let them do the work)",
                self.url
            )));
        }
        let rows = tx
            .query(
                "UPDATE shards SET holder = $1, epoch = epoch + 1, expires_at = 'infinity' RETURNING shard, epoch",
                &[&holder],
            )
            .await
            .map_err(pg("taking the pass lease"))?;
        tx.commit().await.map_err(pg("taking the pass lease"))?;
        let shards = rows
            .iter()
            .map(|r| (r.get::<_, i32>(0) as u16, r.get::<_, i64>(1)))
            .collect();
        Ok(Lease {
            fence: Some(Fence {
                holder: holder.clone(),
                shards,
            }),
            ..Lease::new(PassLease {
                store: self.clone(),
                holder,
            })
        })
    }

    async fn records(&self, users: &[String]) -> Result<HashMap<String, Record>, StateError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT user_id, message, expiry, occurrences, pending_message, pending_expiry, saved_message, failures
                 FROM users WHERE user_id = ANY($1)",
                &[&users],
            )
            .await
            .map_err(pg("reading records"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let rec = Record {
                    user_id: r.get(0),
                    message: r.get(1),
                    expiry: r.get(2),
                    occurrences: r.get(3),
                    pending_message: r.get(4),
                    pending_expiry: r.get(5),
                    saved_message: r.get(6),
                    failures: r.get(7),
                };
                (rec.user_id.clone(), rec)
            })
            .collect())
    }

    async fn observe(
        &self,
        pass_id: &str,
        at: DateTime<Utc>,
        observations: Vec<Observation>,
    ) -> Result<(), StateError> {
        if observations.is_empty() {
            return Ok(());
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg("recording"))?;
        for o in &observations {
            match o {
                Observation::AdoptPending(user) => {
                    tx.execute(
                        "UPDATE users SET message = pending_message, expiry = pending_expiry, written_at = pending_at,
                            pending_message = NULL, pending_expiry = NULL, pending_at = NULL WHERE user_id = $1",
                        &[user],
                    )
                    .await
                    .map_err(pg("recording an adoption"))?;
                    tx.execute(
                        "INSERT INTO journal (pass_id, at, user_id, decision, outcome, detail)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[
                            &pass_id,
                            &at,
                            user,
                            &super::ADOPTION.0,
                            &JournalOutcome::Adopted.as_str(),
                            &super::ADOPTION.1,
                        ],
                    )
                    .await
                    .map_err(pg("recording an adoption"))?;
                }
                Observation::Forget(user) => {
                    tx.execute(
                        "UPDATE users SET message = NULL, expiry = NULL WHERE user_id = $1",
                        &[user],
                    )
                    .await
                    .map_err(pg("recording"))?;
                }
            }
        }
        tx.commit().await.map_err(pg("recording"))
    }

    async fn record_intents(
        &self,
        pass_id: &str,
        at: DateTime<Utc>,
        intents: Vec<Intent>,
        fence: Option<&Fence>,
    ) -> Result<(), StateError> {
        if intents.is_empty() {
            return Ok(());
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg("recording intents"))?;
        if let Some(f) = fence {
            // Lock the leases: a takeover waits for this commit.
            let shards: Vec<i32> = f.shards.iter().map(|(s, _)| i32::from(*s)).collect();
            let rows = tx
                .query(
                    "SELECT shard, epoch FROM shards
                     WHERE shard = ANY($1) AND holder = $2 AND expires_at > now()
                     FOR UPDATE",
                    &[&shards, &f.holder],
                )
                .await
                .map_err(pg("checking the leases"))?;
            let held: HashMap<u16, i64> = rows
                .iter()
                .map(|r| (r.get::<_, i32>(0) as u16, r.get::<_, i64>(1)))
                .collect();
            if let Some((shard, _)) = f.shards.iter().find(|(s, e)| held.get(s) != Some(e)) {
                return Err(StateError::Fenced { shard: *shard });
            }
        }
        // Two statements for the whole pass, not two per person: the shard
        // rows stay locked for milliseconds (heartbeats wait for them).
        let users: Vec<&str> = intents.iter().map(|i| i.user.as_str()).collect();
        let messages: Vec<Option<&str>> = intents.iter().map(|i| i.message.as_deref()).collect();
        let expiries: Vec<Option<DateTime<Utc>>> = intents.iter().map(|i| i.expiry).collect();
        let saved: Vec<Option<&str>> = intents.iter().map(|i| i.save_personal.as_deref()).collect();
        let decisions: Vec<&str> = intents.iter().map(|i| i.decision.as_str()).collect();
        tx.execute(
            "INSERT INTO users (user_id, pending_message, pending_expiry, pending_at, saved_message, saved_at)
             SELECT u, m, e, $4::timestamptz, s, CASE WHEN s IS NULL THEN NULL ELSE $4::timestamptz END
             FROM unnest($1::text[], $2::text[], $3::timestamptz[], $5::text[]) AS t(u, m, e, s)
             ON CONFLICT (user_id) DO UPDATE SET pending_message = EXCLUDED.pending_message,
                pending_expiry = EXCLUDED.pending_expiry, pending_at = EXCLUDED.pending_at,
                saved_message = COALESCE(EXCLUDED.saved_message, users.saved_message),
                saved_at = CASE WHEN EXCLUDED.saved_message IS NULL THEN users.saved_at ELSE EXCLUDED.pending_at END",
            &[&users, &messages, &expiries, &at, &saved],
        )
        .await
        .map_err(pg("recording intents"))?;
        tx.execute(
            "INSERT INTO journal (pass_id, at, user_id, decision, message, expiry, outcome)
             SELECT $1, $2, u, d, m, e, 'intent'
             FROM unnest($3::text[], $4::text[], $5::text[], $6::timestamptz[]) WITH ORDINALITY AS t(u, d, m, e, n)
             ORDER BY n",
            &[&pass_id, &at, &users, &decisions, &messages, &expiries],
        )
        .await
        .map_err(pg("recording intents"))?;
        tx.commit().await.map_err(pg("recording intents"))
    }

    async fn record_outcomes(
        &self,
        pass_id: &str,
        at: DateTime<Utc>,
        outcomes: Vec<WriteResult>,
    ) -> Result<(), StateError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg("recording outcomes"))?;
        // A few statements per group of outcomes, not a few per person.
        let (ok, failed): (Vec<&WriteResult>, Vec<&WriteResult>) =
            outcomes.iter().partition(|o| o.result.is_ok());
        record_applied(&tx, at, &ok).await?;
        record_failed(&tx, &failed).await?;
        journal_outcomes(&tx, pass_id, at, &outcomes).await?;
        tx.commit().await.map_err(pg("recording outcomes"))
    }

    async fn cached_upn(&self, upn: &str) -> Result<Option<String>, StateError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT object_id FROM upn_cache WHERE upn = $1",
            &[&upn.to_ascii_lowercase()],
        )
        .await
        .map_err(pg("reading the UPN cache"))?
        .map(|r| r.get(0)))
    }

    async fn cache_upn(&self, upn: &str, id: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO upn_cache (upn, object_id, resolved_at) VALUES ($1, $2, $3)
             ON CONFLICT (upn) DO UPDATE SET object_id = $2, resolved_at = $3",
            &[&upn.to_ascii_lowercase(), &id, &at],
        )
        .await
        .map_err(pg("caching a UPN"))?;
        Ok(())
    }

    async fn journal(&self) -> Result<Vec<JournalEntry>, StateError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT pass_id, user_id, decision, message, expiry, outcome, detail FROM journal ORDER BY id",
                &[],
            )
            .await
            .map_err(pg("reading the journal"))?;
        Ok(rows
            .iter()
            .map(|r| JournalEntry {
                pass_id: r.get(0),
                user_id: r.get(1),
                decision: Decision::parse(r.get::<_, &str>(2)),
                message: r.get(3),
                expiry: r.get(4),
                outcome: JournalOutcome::parse(r.get::<_, &str>(5))
                    .unwrap_or(JournalOutcome::Failed),
                detail: r.get(6),
            })
            .collect())
    }

    fn shared(&self) -> bool {
        true
    }

    async fn heartbeat(
        &self,
        holder: &str,
        ttl: Duration,
        spend: Spend,
    ) -> Result<Held, StateError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(pg("renewing leases"))?;
        // A heartbeat never queues behind a lock for long: better a failed
        // beat (retried in a second) than a lease lapsing while waiting.
        tx.batch_execute("SET LOCAL lock_timeout = '1s'; SET LOCAL statement_timeout = '5s'")
            .await
            .map_err(pg("renewing leases"))?;
        let ttl_s = seconds(ttl);
        let others_spent = report_alive(&tx, holder, spend).await?;
        let mut shards = renew(&tx, holder, ttl_s).await?;
        let live = live_instances(&tx, ttl_s).await?;
        let rank = live.iter().position(|h| h == holder).unwrap_or(0);
        let fair = fair_share(live.len(), rank);
        let mut taken_over = Vec::new();
        if shards.len() > fair {
            give_back(&tx, holder, &mut shards, fair).await?;
        } else if shards.len() < fair {
            taken_over = take_free(&tx, holder, ttl_s, &mut shards, fair).await?;
        }
        tx.commit().await.map_err(pg("renewing leases"))?;
        Ok(Held {
            shards,
            taken_over,
            live: live.len().max(1),
            others_spent: usize::try_from(others_spent).unwrap_or(0),
        })
    }

    async fn release(&self, holder: &str) -> Result<(), StateError> {
        let c = self.client().await?;
        c.execute(
            "UPDATE shards SET holder = NULL, expires_at = now() WHERE holder = $1",
            &[&holder],
        )
        .await
        .map_err(pg("giving shards back"))?;
        // Not live any more; what it spent still counts for a window.
        c.execute(
            "UPDATE instances SET released = true WHERE holder = $1",
            &[&holder],
        )
        .await
        .map_err(pg("giving shards back"))?;
        Ok(())
    }
}

/// Reads the password: `PGPASSWORD`, or `[state] password_env`, or
/// `password_file` (relative to `dir`).
pub fn password(
    state: &crate::config::StateSection,
    dir: &Path,
) -> Result<Option<crate::graph::Secret>, String> {
    if let Some(var) = &state.password_env {
        return std::env::var(var)
            .map(|v| Some(crate::graph::Secret::new(v)))
            .map_err(|_| format!("state.password_env: the environment variable {var} is not set"));
    }
    if let Some(f) = &state.password_file {
        let p = dir.join(f);
        return std::fs::read_to_string(&p)
            .map(|v| Some(crate::graph::Secret::new(v.trim_end_matches(['\n', '\r']))))
            .map_err(|e| format!("state.password_file: cannot read {}: {e}", p.display()));
    }
    Ok(std::env::var("PGPASSWORD")
        .ok()
        .map(crate::graph::Secret::new))
}
