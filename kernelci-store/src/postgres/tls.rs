//! TLS to the database with rustls, configured the way libpq users expect from the
//! connection URL.
//!
//! | URL | what happens |
//! |---|---|
//! | `sslmode=disable` | plain TCP |
//! | no `sslmode`, or `sslmode=prefer` | TLS when the server offers it (certificate not checked), else plain |
//! | `sslmode=require` | TLS or no connection; the certificate is not checked (as libpq) unless `sslrootcert` is given |
//! | `sslmode=verify-ca` / `verify-full`, or `require` with `sslrootcert=FILE` | TLS, the server's certificate must chain to the CA(s) in `FILE` and name the host |
//!
//! `verify-ca` is treated as `verify-full` (the host name is checked too): stricter
//! than libpq, never weaker. `sslrootcert` is read as PEM.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::StoreError;

/// A connection URL split into what tokio-postgres reads and what we handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    /// The URL without `sslrootcert`, with `verify-*` modes turned into `require`.
    pub for_driver: String,
    /// `sslrootcert`, if given.
    pub root_cert: Option<String>,
    /// Whether the certificate must be verified.
    pub verify: bool,
}

/// Splits the TLS settings out of a `postgres://` URL (key=value strings are passed
/// through unchanged).
pub(crate) fn parse_url(url: &str) -> ParsedUrl {
    let Some((base, query)) = url.split_once('?') else {
        return ParsedUrl {
            for_driver: url.to_owned(),
            root_cert: None,
            verify: false,
        };
    };
    let mut kept = Vec::new();
    let mut root_cert = None;
    let mut verify = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (k, v) {
            ("sslrootcert", file) => root_cert = Some(percent_decode(file)),
            ("sslmode", "verify-ca" | "verify-full") => {
                verify = true;
                kept.push("sslmode=require".to_owned());
            }
            _ => kept.push(pair.to_owned()),
        }
    }
    if root_cert.is_some() {
        verify = true;
    }
    let for_driver = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    ParsedUrl {
        for_driver,
        root_cert,
        verify,
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(x) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The rustls connector, usable with Unix sockets too: tokio-postgres asks for a TLS
/// connector before it looks at `sslmode` (and a socket path or an empty host is no
/// server name rustls accepts), although PostgreSQL never offers TLS on a socket;
/// such hosts get a placeholder name.
#[derive(Clone)]
pub(crate) struct Connector(MakeRustlsConnect);

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for Connector
where
    MakeRustlsConnect: tokio_postgres::tls::MakeTlsConnect<S>,
{
    type Stream = <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        let domain = if domain.is_empty() || domain.starts_with('/') {
            "localhost"
        } else {
            domain
        };
        self.0.make_tls_connect(domain)
    }
}

/// The rustls connector for `url`.
pub(crate) fn connector(url: &ParsedUrl) -> Result<Connector, StoreError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("TLS: {e}")))?;
    let config = if url.verify {
        let Some(file) = &url.root_cert else {
            return Err(StoreError::Config(
                "sslmode=verify-ca/verify-full needs sslrootcert=FILE (a PEM CA file)".into(),
            ));
        };
        let mut roots = RootCertStore::empty();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(file)
            .map_err(|e| StoreError::Config(format!("sslrootcert {file}: {e}")))?
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::Config(format!("sslrootcert {file}: {e}")))?;
        if certs.is_empty() {
            return Err(StoreError::Config(format!(
                "sslrootcert {file}: no certificate in the file"
            )));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| StoreError::Config(format!("sslrootcert {file}: {e}")))?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth()
    };
    Ok(Connector(MakeRustlsConnect::new(config)))
}

/// `sslmode=prefer`/`require` without a CA: the channel is encrypted and the
/// handshake signatures are checked, but the certificate's identity is not (libpq's
/// meaning of these modes).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_are_split_from_the_url() {
        let p = parse_url("postgres://u@h:5/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x");
        assert_eq!(
            p.for_driver,
            "postgres://u@h:5/db?sslmode=require&application_name=x"
        );
        assert_eq!(p.root_cert.as_deref(), Some("/tmp/ca.pem"));
        assert!(p.verify);
        let p = parse_url("postgres://u@h/db?sslmode=require");
        assert_eq!(p.for_driver, "postgres://u@h/db?sslmode=require");
        assert!(!p.verify);
        let p = parse_url("host=h user=u");
        assert_eq!(p.for_driver, "host=h user=u");
        assert!(!p.verify);
    }

    #[test]
    fn verification_without_a_ca_is_a_configuration_error() {
        let p = parse_url("postgres://h/db?sslmode=verify-ca");
        assert!(matches!(connector(&p), Err(StoreError::Config(_))));
        let p = parse_url("postgres://h/db?sslrootcert=/nonexistent/ca.pem");
        assert!(matches!(connector(&p), Err(StoreError::Config(_))));
    }
}
