//! TLS to PostgreSQL, with the `sslmode` meanings every PostgreSQL user knows from libpq
//! (`psql`), so a store URL behaves in Keel as it does in `psql`:
//!
//! | `sslmode`         | TLS                          | server certificate checked        |
//! |-------------------|------------------------------|-----------------------------------|
//! | `disable`         | never                        | —                                 |
//! | `prefer` (default)| when the server offers it    | no                                |
//! | `require`         | always                       | no                                |
//! | `verify-ca`       | always                       | signed by a trusted root          |
//! | `verify-full`     | always                       | trusted root, and names the host  |
//!
//! Trusted roots: the PEM file `sslrootcert=/path/root.crt` names, or — without it, or
//! with `sslrootcert=system` — Mozilla's public roots (the CAs managed PostgreSQL
//! services use). The driver parses only `disable|prefer|require`, so the two `verify-*`
//! modes and `sslrootcert` are taken out of the URL here and the driver is told
//! `require`. TLS is rustls with the ring provider (as the HTTP client), chosen
//! explicitly so no process-wide default is needed.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::StoreError;

/// How a connection uses TLS (libpq's `sslmode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS part of a store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: TlsMode,
    /// `sslrootcert`: a PEM file of trusted roots (`None`: Mozilla's public roots).
    pub root_cert: Option<PathBuf>,
}

/// Split a store URL into what the driver parses and Keel's TLS settings: `sslmode`
/// `verify-ca`/`verify-full` become `require` for the driver, `sslrootcert` is removed.
pub fn split_url(url: &str) -> Result<(String, TlsSettings), StoreError> {
    let mut settings = TlsSettings {
        mode: TlsMode::Prefer,
        root_cert: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), settings));
    };
    let mut kept: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "sslmode" => {
                settings.mode = match value.as_str() {
                    "disable" => TlsMode::Disable,
                    "allow" | "prefer" => TlsMode::Prefer,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    other => {
                        return Err(StoreError::PostgresUrl {
                            reason: format!(
                                "sslmode `{other}` is not one of disable, allow, prefer, require, \
                                 verify-ca, verify-full"
                            ),
                        })
                    }
                };
                let driver = match settings.mode {
                    TlsMode::Disable => "disable",
                    TlsMode::Prefer => "prefer",
                    _ => "require",
                };
                kept.push(format!("sslmode={driver}"));
            }
            "sslrootcert" if value == "system" => settings.root_cert = None,
            "sslrootcert" => settings.root_cert = Some(PathBuf::from(value)),
            _ => kept.push(pair.to_string()),
        }
    }
    if settings.root_cert.is_some()
        && !matches!(settings.mode, TlsMode::VerifyCa | TlsMode::VerifyFull)
    {
        // libpq checks the chain whenever a root file is given; so does Keel.
        settings.mode = TlsMode::VerifyCa;
        kept.retain(|p| !p.starts_with("sslmode="));
        kept.push("sslmode=require".into());
    }
    let driver_url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((driver_url, settings))
}

/// `%2F` → `/`, `+` kept: enough for a file path in a URL's query.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let (hi, lo) = (bytes[i + 1], bytes[i + 2]);
            if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() {
                let digit = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(digit(hi) * 16 + digit(lo));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The connector for `settings` (used by every connection of the pool; with
/// `disable` the driver never calls it).
pub fn connector(settings: &TlsSettings, shown: &str) -> Result<MakeRustlsConnect, StoreError> {
    let fail = |reason: String| StoreError::PostgresPool {
        url: shown.to_string(),
        reason,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(format!("cannot set up TLS: {e}")))?;
    let config = match settings.mode {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider())))
            .with_no_client_auth(),
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let roots = Arc::new(roots(settings, &fail)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| fail(format!("cannot set up TLS verification: {e}")))?;
            if settings.mode == TlsMode::VerifyFull {
                builder.with_webpki_verifier(webpki).with_no_client_auth()
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
                    .with_no_client_auth()
            }
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn roots(
    settings: &TlsSettings,
    fail: &dyn Fn(String) -> StoreError,
) -> Result<RootCertStore, StoreError> {
    let Some(path) = &settings.root_cert else {
        return Ok(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(format!("cannot read sslrootcert {shown}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            fail(format!(
                "sslrootcert {shown} is not a PEM certificate file: {e}"
            ))
        })?;
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(fail(format!(
            "sslrootcert {shown} holds no certificate: give the PEM file of the CA that signed the server's certificate"
        )));
    }
    Ok(store)
}

/// `require`/`prefer`: encrypted, the certificate not checked (libpq's meaning); the
/// handshake's signatures are still verified against the certificate presented.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name in it is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_and_root_files_are_taken_out_of_the_url() {
        let (url, s) = split_url(
            "postgres://u@db.example:5432/keel?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u@db.example:5432/keel?application_name=x&sslmode=require"
        );
        assert_eq!(s.mode, TlsMode::VerifyFull);
        assert_eq!(s.root_cert, Some(PathBuf::from("/etc/ca.pem")));

        let (url, s) = split_url("postgres://u@h/db").unwrap();
        assert_eq!(
            (url.as_str(), s.mode),
            ("postgres://u@h/db", TlsMode::Prefer)
        );
        let (url, s) = split_url("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(
            (url.as_str(), s.mode),
            ("postgres://u@h/db?sslmode=disable", TlsMode::Disable)
        );
        // A root file alone means the chain is checked, as in libpq.
        let (url, s) = split_url("postgres://u@h/db?sslmode=require&sslrootcert=ca.pem").unwrap();
        assert_eq!(
            (url.as_str(), s.mode),
            ("postgres://u@h/db?sslmode=require", TlsMode::VerifyCa)
        );
        let (_, s) = split_url("postgres://u@h/db?sslmode=verify-ca&sslrootcert=system").unwrap();
        assert_eq!((s.mode, s.root_cert), (TlsMode::VerifyCa, None));
    }

    #[test]
    fn an_unknown_sslmode_is_refused_with_the_choices() {
        let e = split_url("postgres://u@h/db?sslmode=verify")
            .unwrap_err()
            .to_string();
        assert!(e.contains("verify-full") && e.contains("`verify`"), "{e}");
    }

    #[test]
    fn a_root_file_that_is_missing_or_empty_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for path in [dir.path().join("missing.pem"), empty] {
            let s = TlsSettings {
                mode: TlsMode::VerifyFull,
                root_cert: Some(path.clone()),
            };
            let e = connector(&s, "postgres://u@h:5432/db")
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(&path.display().to_string()), "{e}");
        }
    }
}
