//! A throwaway PostgreSQL database per test, on the server named by
//! `CALSTATUS_TEST_POSTGRES` (default `postgres://127.0.0.1:5432/test`,
//! trust auth). Where no server answers, the test says it skipped and why
//! — and fails instead when `CALSTATUS_REQUIRE_POSTGRES` is set (CI, where
//! the server must be there).

/// The server tests use.
pub fn server() -> String {
    std::env::var("CALSTATUS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://127.0.0.1:5432/test".into())
}

/// A database created for one test, dropped when this is dropped.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    name: String,
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
    })
}

fn skip(test: &str, server: &str, why: &str) -> Option<TestDb> {
    let msg =
        format!("SKIPPED {test}: no PostgreSQL at {server} ({why}); set CALSTATUS_TEST_POSTGRES");
    if std::env::var_os("CALSTATUS_REQUIRE_POSTGRES").is_some() {
        panic!("{msg} — and CALSTATUS_REQUIRE_POSTGRES is set");
    }
    println!("{msg}");
    eprintln!("{msg}");
    None
}
