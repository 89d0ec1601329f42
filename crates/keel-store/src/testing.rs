//! Stores for tests, on both backends (feature `test-support`; this crate's own tests
//! always have it).
//!
//! - [`stores`] — a fresh SQLite store and a fresh PostgreSQL one, for a test that must
//!   hold on both: `for (store, _db) in stores() { … }`.
//! - [`TestDb`] — a PostgreSQL database of its own for one test, dropped when it ends,
//!   on the server at `KEEL_TEST_POSTGRES` (default
//!   `postgres://postgres@127.0.0.1:5432/test`, the machine's and CI's).
//! - [`CutProxy`] — a TCP proxy to that server that a test can cut, to see what Keel
//!   does when the database goes away mid-load.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::sql::{Db, Postgres};
use crate::Store;

/// The server tests use (an admin URL: tests create and drop databases on it).
pub fn server_url() -> String {
    std::env::var("KEEL_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A database of its own for one test; dropped (with its connections) at the end.
pub struct TestDb {
    pub name: String,
    admin: Arc<Postgres>,
}

#[allow(clippy::new_without_default)] // creates a database: not a default value
impl TestDb {
    pub fn new() -> TestDb {
        let admin = Postgres::new(&server_url()).unwrap();
        let name = format!("keel_t_{}", uuid::Uuid::new_v4().simple());
        let conn = admin.conn().unwrap_or_else(|e| {
            panic!(
                "these tests need PostgreSQL at {} ({e}); set KEEL_TEST_POSTGRES",
                server_url()
            )
        });
        Db::from(&conn)
            .batch(&format!("CREATE DATABASE {name}"))
            .unwrap();
        TestDb { name, admin }
    }

    /// The database's URL (on `host:port`, to go through a proxy).
    pub fn url_via(&self, host_port: &str) -> String {
        let base = server_url();
        let (scheme_user, rest) = base.split_once('@').unwrap();
        let (_, _db) = rest.split_once('/').unwrap();
        format!("{scheme_user}@{host_port}/{}", self.name)
    }

    pub fn url(&self) -> String {
        let base = server_url();
        let (_, rest) = base.split_once('@').unwrap();
        let (host_port, _) = rest.split_once('/').unwrap();
        self.url_via(host_port)
    }

    /// Bring the database to schema version `last` only (a store an older Keel made),
    /// for tests of the migrations after it.
    pub fn migrate_until(&self, last: u32) {
        let pg = Postgres::new(&self.url()).unwrap();
        let conn = pg.conn().unwrap();
        crate::sql::pg_migrations::migrate_until(&conn, &self.name, u32::MAX, last).unwrap();
    }

    /// The server's `host:port`.
    pub fn server_addr() -> String {
        let base = server_url();
        let (_, rest) = base.split_once('@').unwrap();
        rest.split_once('/').unwrap().0.to_string()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(conn) = self.admin.conn() {
            let _ = Db::from(&conn).batch(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// What `SHOW name` says on a connection a pool opened on `url` gets (the session's
/// setting, as Keel's connections see it).
pub fn session_setting(url: &str, name: &str) -> String {
    let pg = Postgres::new(url).unwrap();
    let conn = pg.conn().unwrap();
    Db::from(&conn)
        .query_row(&format!("SHOW {name}"), &[], |r| r.get(0))
        .unwrap()
}

/// A fresh store on each backend, named ("sqlite", "postgres"), with the PostgreSQL
/// database's guard (`None` for SQLite): keep it alive as long as the store.
pub fn stores() -> Vec<(&'static str, Store, Option<TestDb>)> {
    let db = TestDb::new();
    let pg = Store::open(&db.url()).unwrap();
    vec![
        ("sqlite", Store::open(":memory:").unwrap(), None),
        ("postgres", pg, Some(db)),
    ]
}

/// A TCP proxy to the PostgreSQL server that can be cut (every connection closed, new
/// ones closed on arrival) and restored.
pub struct CutProxy {
    pub addr: String,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl CutProxy {
    pub fn start(upstream: String) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        {
            let cut = Arc::clone(&cut);
            let open = Arc::clone(&open);
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { continue };
                    if cut.load(Ordering::SeqCst) {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    let Ok(server) = TcpStream::connect(&upstream) else {
                        continue;
                    };
                    {
                        let mut open = open.lock().unwrap();
                        open.push(client.try_clone().unwrap());
                        open.push(server.try_clone().unwrap());
                    }
                    pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                    pipe(server, client);
                }
            });
        }
        CutProxy { addr, cut, open }
    }

    /// The database is gone: every connection through the proxy is closed, and new
    /// ones are closed as they arrive.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}
