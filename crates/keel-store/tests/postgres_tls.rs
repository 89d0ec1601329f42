#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! TLS to PostgreSQL behaves as `sslmode` says in libpq: `require` encrypts, `disable`
//! does not, `verify-full` refuses a server whose certificate no trusted root signed,
//! and `verify-ca` with the server's own CA file accepts it (the name not checked).
//!
//! Against the server at `KEEL_TEST_POSTGRES` (default the machine's); skipped, saying
//! so, when that server does not offer TLS.

use keel_store::sql::{Db, Postgres};
use keel_store::testing::{session_setting, TestDb};

/// Whether the connection `url` opens is encrypted (the server's own view).
fn encrypted(url: &str) -> bool {
    let pg = Postgres::new(url).unwrap();
    let conn = pg.conn().unwrap_or_else(|e| panic!("{url}: {e}"));
    Db::from(&conn)
        .query_row(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
            |r| r.get::<bool>(0),
        )
        .unwrap()
}

/// Whether the server offers TLS (saying the test is skipped when it does not).
fn server_offers_tls(db: &TestDb) -> bool {
    let on: String = setting(db, "ssl");
    if on != "on" {
        eprintln!("the test server does not offer TLS (ssl = {on}); skipped");
    }
    on == "on"
}

/// A server setting, read over a plain connection.
fn setting(db: &TestDb, name: &str) -> String {
    session_setting(&format!("{}?sslmode=disable", db.url()), name)
}

#[test]
fn sslmode_means_what_it_means_in_libpq() {
    let db = TestDb::new();
    if !server_offers_tls(&db) {
        return;
    }
    let url = db.url();
    assert!(!encrypted(&format!("{url}?sslmode=disable")));
    assert!(encrypted(&format!("{url}?sslmode=require")));
    // libpq's default: TLS when the server offers it.
    assert!(encrypted(&url));
    // A store opened over TLS is a store like any other.
    let pg = Postgres::open(&format!("{url}?sslmode=require")).unwrap();
    assert_eq!(keel_store::count_traces(&pg.conn().unwrap()).unwrap(), 0);

    // verify-full with the public roots: a self-signed server certificate is refused,
    // and the error says it is the certificate.
    let pg = Postgres::new(&format!("{url}?sslmode=verify-full")).unwrap();
    let err = pg.conn().unwrap_err().to_string();
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[test]
fn verify_ca_accepts_the_servers_own_ca_file() {
    let db = TestDb::new();
    if !server_offers_tls(&db) {
        return;
    }
    // The server's certificate file, when this machine can read it (Debian's default).
    let file = setting(&db, "ssl_cert_file");
    if std::fs::read(&file).is_err() {
        eprintln!("cannot read the server's certificate {file}; skipped");
        return;
    }
    let url = format!("{}?sslmode=verify-ca&sslrootcert={file}", db.url());
    assert!(encrypted(&url));
}
