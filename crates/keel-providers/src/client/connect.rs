//! Opening a connection to an upstream: straight to it, or through the proxy the
//! environment names for it.
//!
//! An `https://` upstream behind a proxy is reached through a `CONNECT` tunnel (the proxy
//! sees only the host and port; TLS runs end to end through it). A plain `http://`
//! upstream behind a proxy gets a connection to the proxy that is marked proxied, so hyper
//! writes its requests in absolute form (`POST http://host/path`), as proxies expect; its
//! `Proxy-Authorization` is added per request (`HttpClient::post`). Only `http://` proxies
//! are supported (reqwest also did TLS to an `https://` proxy); any other scheme fails the
//! call with an error that says so.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder, MaybeHttpsStream};
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower::{Service, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle time before TCP keep-alive probes, and the time between them.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

/// The connector the pooled client uses: TLS (ALPN h2, HTTP/1.1) over [`ProxyAware`],
/// the whole of it — DNS, TCP, a proxy's `CONNECT`, the TLS handshake — bounded by the
/// connect timeout (hyper's own bounds only the TCP attempts).
#[derive(Clone)]
pub(crate) struct Connector {
    inner: HttpsConnector<ProxyAware>,
    timeout: Duration,
}

pub(crate) fn new(proxies: Option<Arc<Matcher>>, timeout: Duration) -> Result<Connector, String> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(timeout));
    // A long stream through a NAT or a load balancer must not be dropped as idle: TCP
    // keep-alive probes every 15 s, 3 unanswered ones end it (reqwest's defaults).
    http.set_keepalive(Some(TCP_KEEPALIVE));
    http.set_keepalive_interval(Some(TCP_KEEPALIVE));
    http.set_keepalive_retries(Some(3));
    let tls = tls_config()?;
    let inner = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(ProxyAware { http, proxies });
    Ok(Connector { inner, timeout })
}

type Connecting<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl Service<Uri> for Connector {
    type Response = MaybeHttpsStream<ProxiedIo>;
    type Error = BoxError;
    type Future = Connecting<Self::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.inner.call(dst);
        let timeout = self.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(done) => done,
                Err(_) => Err(format!(
                    "connecting took longer than {} ms (DNS, TCP, proxy and TLS together)",
                    timeout.as_millis()
                )
                .into()),
            }
        })
    }
}

/// rustls with ring and Mozilla's roots (what reqwest's `rustls-tls` used).
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// TCP to the upstream, or to its proxy (a tunnel for `https://`).
#[derive(Clone)]
pub(crate) struct ProxyAware {
    http: HttpConnector,
    proxies: Option<Arc<Matcher>>,
}

impl Service<Uri> for ProxyAware {
    type Response = ProxiedIo;
    type Error = BoxError;
    type Future = Connecting<ProxiedIo>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let intercept = self.proxies.as_ref().and_then(|p| p.intercept(&dst));
        let Some(proxy) = intercept else {
            let connecting = self.http.call(dst);
            return Box::pin(async move {
                let io = connecting.await?;
                Ok(ProxiedIo { io, proxied: false })
            });
        };
        if proxy.uri().scheme() != Some(&http::uri::Scheme::HTTP) {
            let scheme = proxy.uri().scheme_str().unwrap_or("none").to_string();
            return Box::pin(async move {
                Err(format!(
                    "the proxy set in the environment is `{scheme}://…`; Keel supports \
                     http:// proxies only (set HTTPS_PROXY / HTTP_PROXY to one, or NO_PROXY \
                     for this host)"
                )
                .into())
            });
        }
        let http = self.http.clone();
        if dst.scheme() == Some(&http::uri::Scheme::HTTPS) {
            let mut tunnel = Tunnel::new(proxy.uri().clone(), http);
            if let Some(auth) = proxy.basic_auth() {
                tunnel = tunnel.with_auth(auth.clone());
            }
            return Box::pin(async move {
                let io = tunnel.oneshot(dst).await?;
                Ok(ProxiedIo { io, proxied: false })
            });
        }
        let to_proxy = proxy.uri().clone();
        Box::pin(async move {
            let io = http.oneshot(to_proxy).await?;
            Ok(ProxiedIo { io, proxied: true })
        })
    }
}

/// A TCP connection that knows whether requests on it go to a proxy (absolute form).
pub(crate) struct ProxiedIo {
    io: TokioIo<TcpStream>,
    proxied: bool,
}

impl Connection for ProxiedIo {
    fn connected(&self) -> Connected {
        self.io.connected().proxy(self.proxied)
    }
}

impl Read for ProxiedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for ProxiedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
