//! A loopback port that refuses connections for as long as a test holds it.
//!
//! Binding port 0 and dropping the listener frees the port for the next `bind` in the
//! same process: with tests running in parallel another test's server could take it and
//! answer the call that was meant to be refused (CI saw exactly that). A socket that is
//! bound but never listens keeps the port reserved and makes the kernel answer every
//! connection with a reset.

use std::net::SocketAddr;

use tokio::net::TcpSocket;

/// A reserved, refusing address: connections to it fail until the socket is dropped.
pub(crate) struct RefusingPort {
    _socket: TcpSocket,
    pub addr: SocketAddr,
}

pub(crate) fn refusing_port() -> RefusingPort {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    RefusingPort {
        _socket: socket,
        addr,
    }
}

#[tokio::test]
async fn a_refusing_port_refuses_and_stays_reserved() {
    let port = refusing_port();
    let err = tokio::net::TcpStream::connect(port.addr).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(tokio::net::TcpListener::bind(port.addr).await.is_err());
}
