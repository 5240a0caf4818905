//! A throwaway PostgreSQL database per test, on the server named by
//! `CALSTATUS_TEST_POSTGRES` (default `postgres://127.0.0.1:5432/test`,
//! trust auth). Where no server answers, the test says it skipped and why
//! — and fails instead when `CALSTATUS_NO_SKIP` is set (CI, where the
//! server must be there).

/// The server tests use.
pub fn server() -> String {
    std::env::var("CALSTATUS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://127.0.0.1:5432/test".into())
}

/// Tests of this binary share the server; the one that restarts it runs
/// alone (a write lock), the others side by side (read locks).
static SERVER: std::sync::LazyLock<std::sync::Arc<tokio::sync::RwLock<()>>> =
    std::sync::LazyLock::new(Default::default);

enum Hold {
    Shared(#[allow(dead_code)] tokio::sync::OwnedRwLockReadGuard<()>),
    Alone(#[allow(dead_code)] tokio::sync::OwnedRwLockWriteGuard<()>),
}

/// A database created for one test, dropped when this is dropped.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    name: String,
    _hold: Hold,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (server(), self.name.clone());
        // Dropped from a plain thread: the test's runtime may be gone.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(&server, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = c
                        .execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), &[])
                        .await;
                }
            });
        })
        .join();
    }
}

/// A fresh database, or `None` (after saying why) when no server answers.
pub async fn throwaway(test: &str) -> Option<TestDb> {
    let hold = Hold::Shared(SERVER.clone().read_owned().await);
    create(test, hold).await
}

/// Like [`throwaway`], for a test that restarts the server: no other
/// PostgreSQL test of this binary runs meanwhile.
pub async fn throwaway_alone(test: &str) -> Option<TestDb> {
    let hold = Hold::Alone(SERVER.clone().write_owned().await);
    create(test, hold).await
}

async fn create(test: &str, hold: Hold) -> Option<TestDb> {
    let server = server();
    let connected = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio_postgres::connect(&server, tokio_postgres::NoTls),
    )
    .await;
    let (client, conn) = match connected {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return skip(test, &server, &e.to_string()),
        Err(_) => return skip(test, &server, "no answer within 5 s"),
    };
    tokio::spawn(conn);
    let name = format!("calstatus_t_{}", uuid::Uuid::new_v4().simple());
    if let Err(e) = client
        .execute(&format!("CREATE DATABASE {name}"), &[])
        .await
    {
        return skip(test, &server, &format!("cannot create a database: {e}"));
    }
    let mut url: url::Url = server.parse().expect("CALSTATUS_TEST_POSTGRES is a URL");
    url.set_path(&format!("/{name}"));
    Some(TestDb {
        url: url.to_string(),
        name,
        _hold: hold,
    })
}

fn skip(test: &str, server: &str, why: &str) -> Option<TestDb> {
    super::skip(
        test,
        &format!("no PostgreSQL at {server} ({why}); set CALSTATUS_TEST_POSTGRES"),
    );
    None
}

/// A loopback TCP proxy in front of the PostgreSQL server, that a test can
/// cut (every connection dropped, new ones refused) and restore: a database
/// outage without touching the server other tests use.
pub struct Proxy {
    /// The URL of `db` through the proxy.
    pub url: String,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to the server of `db`.
    pub async fn start(db: &TestDb) -> Proxy {
        use std::sync::atomic::Ordering;
        let mut url: url::Url = db.url.parse().unwrap();
        let target = format!(
            "{}:{}",
            url.host_str().unwrap_or("127.0.0.1"),
            url.port().unwrap_or(5432)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        url.set_port(Some(listener.local_addr().unwrap().port()))
            .unwrap();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, cs) = (cut.clone(), conns.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is refused
                }
                let target = target.clone();
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                cs.lock().unwrap().push(h.abort_handle());
            }
        });
        Proxy {
            url: url.to_string(),
            cut,
            conns,
            task,
        }
    }

    /// The database becomes unreachable.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for h in self.conns.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    /// The database is back.
    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// Restarts the local PostgreSQL cluster serving the tests (Debian's
/// `pg_ctlcluster`); `Err` says why it cannot.
pub fn restart_server() -> Result<(), String> {
    let clusters: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .map_err(|e| format!("no /etc/postgresql ({e}): not a Debian cluster"))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let Some(version) = clusters.first() else {
        return Err("no cluster under /etc/postgresql".into());
    };
    let out = std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version, "main", "restart"])
        .output()
        .map_err(|e| format!("pg_ctlcluster: {e}"))?;
    if !out.status.success() {
        // pg_ctlcluster may give up waiting while the server is still
        // starting (a loaded machine): what counts is that it answers.
        let answers = || {
            std::process::Command::new("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", "5432"])
                .status()
                .is_ok_and(|s| s.success())
        };
        for _ in 0..40 {
            if answers() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        return Err(format!(
            "pg_ctlcluster {version} main restart: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}
