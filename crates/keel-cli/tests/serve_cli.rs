#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `keel serve` binds its port before it touches the store: one that cannot listen
//! (the port is taken) exits 2 having pushed nothing, labelled nothing.

mod common;

use common::{quickstart, stdout_and_stderr, Keel};

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
