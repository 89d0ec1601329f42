#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel serve` binds its port before it touches the store: one that cannot listen
//! (the port is taken) exits 2 having pushed nothing, labelled nothing; and it serves
//! requests on as many threads as `[gateway] worker_threads` says (a bad
//! `TOKIO_WORKER_THREADS` is an error naming it).

mod common;

use common::{quickstart, stdout_and_stderr, Keel, Replica};

const KEEL: Keel = Keel::AS_TEST_USER;

#[test]
fn a_serve_that_cannot_bind_writes_nothing_to_the_store() {
    let (_guard, dir) = quickstart();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    // The quickstart pushes its prompts and sets `production` on start.
    let o = KEEL.run(&dir, &["serve", "--listen", &addr]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout_and_stderr(&o));
    assert!(
        stdout_and_stderr(&o).contains("cannot listen on"),
        "{}",
        stdout_and_stderr(&o)
    );
    let list = KEEL.json_ok(&dir, &["prompt", "list"]);
    assert_eq!(list["prompts"].as_array().map(Vec::len), Some(0), "{list}");
    let audit = KEEL.json_ok(&dir, &["audit"]);
    assert!(
        !audit.to_string().contains("prompt.push"),
        "a failed start pushed: {audit}"
    );
}

/// How many runtime workers the gateway `name` in `dir` says it started with (its
/// startup log line).
fn runtime_workers(dir: &std::path::Path, name: &str) -> Option<usize> {
    let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap();
    let line = log.lines().find(|l| l.contains("keel gateway listening"))?;
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("workers="))?
        .parse()
        .ok()
}

#[test]
fn worker_threads_sets_how_many_threads_serve_requests() {
    let dir = tempfile::tempdir().unwrap();
    let config = |threads: &str| {
        format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nstore = \"STORE\"\n{threads}\n\
             [providers.up]\nkind = \"mock\"\n[models.m]\nprovider = \"up\"\n"
        )
    };
    let one = Replica::start(dir.path(), "one", &config("worker_threads = 1"));
    let _three = Replica::start(dir.path(), "three", &config("worker_threads = 3"));
    assert_eq!(runtime_workers(dir.path(), "one"), Some(1));
    assert_eq!(runtime_workers(dir.path(), "three"), Some(3));
    // And the one thread serves.
    use std::io::{Read, Write};
    let addr = one.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /health HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_bad_tokio_worker_threads_is_an_error_that_names_it_not_a_panic() {
    let (_guard, dir) = quickstart();
    let o = Keel::with_env(&[("TOKIO_WORKER_THREADS", "0")])
        .run(&dir, &["serve", "--listen", "127.0.0.1:0"]);
    let text = stdout_and_stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{text}");
    assert!(
        text.contains("TOKIO_WORKER_THREADS=\"0\" is not a thread count"),
        "{text}"
    );
    assert!(!text.contains("panicked"), "{text}");
}
