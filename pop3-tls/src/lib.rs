//! # pop3-tls
//!
//! rustls configuration shared by the pop3 adapters, whatever their runtime: a verifying
//! client configuration (Mozilla's roots, or a custom CA), a server configuration from PEM
//! files (also over a [`ReloadableCert`], a certificate replaced while the server runs), and
//! (feature `self-signed`) self-signed certificates for demos and tests. Skipping
//! certificate verification is possible only through the loudly named
//! [`Trust::DangerousAcceptAnyCertificate`].
//!
//! # Crypto provider
//!
//! Chosen at build time by a feature, never by whatever else is in the dependency graph:
//! - `aws-lc-rs` (default): rustls' default provider, with the X25519MLKEM768 hybrid
//!   post-quantum key exchange preferred;
//! - `ring`: `default-features = false, features = ["ring"]` (no post-quantum key exchange).
//!
//! With both enabled, aws-lc-rs is used; with neither, the crate does not build.
//! [`provider`] returns the one in use.
//!
//! ```
//! # #[cfg(feature = "self-signed")] {
//! let cert = pop3_tls::self_signed(&["localhost".into()]).unwrap();
//! let server = pop3_tls::server_config(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
//! let client = pop3_tls::client_config(&pop3_tls::Trust::CaPem(cert.cert_pem.into_bytes())).unwrap();
//! # let _ = (server, client);
//! # }
//! ```

#![forbid(unsafe_code)]

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

pub use rustls;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM input holds no certificate.
    #[error("no certificate found in the PEM data")]
    NoCertificate,
    /// A PEM input could not be read.
    #[error("invalid PEM data: {0}")]
    Pem(String),
    /// rustls refused the configuration.
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    /// Generating a certificate failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

/// Which server certificates a client accepts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Trust {
    /// Certificates that chain to Mozilla's root CAs (webpki-roots), for the host name the
    /// client connected to (RFC 2595 §2.4).
    WebPki,
    /// Certificates that chain to the CA certificates in this PEM data (the host name is
    /// still checked).
    CaPem(Vec<u8>),
    /// Every certificate, unverified. Anyone on the path can read the password. For tests
    /// against throwaway servers only.
    DangerousAcceptAnyCertificate,
}

#[cfg(not(any(feature = "aws-lc-rs", feature = "ring")))]
compile_error!("pop3-tls needs a TLS crypto provider: enable the feature `aws-lc-rs` or `ring`");

/// The crypto provider every configuration of this crate is built with: aws-lc-rs when the
/// `aws-lc-rs` feature is on, otherwise ring.
pub fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(all(feature = "ring", not(feature = "aws-lc-rs")))]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

/// All certificates in `pem`.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// A client configuration that verifies server certificates as `trust` says.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, TlsError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match trust {
        Trust::WebPki => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::CaPem(pem) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates_from_pem(pem)? {
                roots.add(cert)?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::DangerousAcceptAnyCertificate => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider())))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A server configuration from a PEM certificate chain and a PEM private key.
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = certificates_from_pem(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem(e.to_string()))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// A server configuration whose certificate is chosen per handshake by `resolver`, such as a
/// [`ReloadableCert`]: the configuration stays while the certificate behind it changes.
pub fn server_config_with_resolver(
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    Ok(Arc::new(config))
}

/// A PEM certificate chain and a PEM private key, checked to belong together.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let certs = certificates_from_pem(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem(e.to_string()))?;
    Ok(CertifiedKey::from_der(certs, key, &provider())?)
}

/// A server certificate that can be replaced while the server runs (a renewed certificate,
/// on `SIGHUP` say), without touching the [`ServerConfig`] built over it or the connections
/// already established: each new handshake takes the certificate current at that moment.
///
/// ```
/// # #[cfg(feature = "self-signed")] {
/// use pop3_tls::ReloadableCert;
///
/// let old = pop3_tls::self_signed(&["localhost".into()]).unwrap();
/// let cert = ReloadableCert::from_pem(old.cert_pem.as_bytes(), old.key_pem.as_bytes()).unwrap();
/// let config = cert.server_config().unwrap(); // give this to the server, once
///
/// let new = pop3_tls::self_signed(&["localhost".into()]).unwrap();
/// cert.replace_pem(new.cert_pem.as_bytes(), new.key_pem.as_bytes()).unwrap();
/// // A key that does not match its certificate is refused, and the current pair kept.
/// assert!(cert.replace_pem(old.cert_pem.as_bytes(), new.key_pem.as_bytes()).is_err());
/// # let _ = config;
/// # }
/// ```
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Starts with this PEM certificate chain and key (see [`certified_key`]).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(ReloadableCert {
            current: RwLock::new(Arc::new(certified_key(cert_pem, key_pem)?)),
        }))
    }

    /// Replaces the certificate and key for the handshakes to come. On an error (unreadable
    /// PEM, a key that does not match the certificate) the current pair stays.
    pub fn replace_pem(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), TlsError> {
        let new = Arc::new(certified_key(cert_pem, key_pem)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }

    /// The certificate and key new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// A server configuration over this certificate ([`server_config_with_resolver`]).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        server_config_with_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>)
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A self-signed certificate and its key, both PEM.
#[cfg(feature = "self-signed")]
#[derive(Clone)]
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

#[cfg(feature = "self-signed")]
impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned").finish_non_exhaustive()
    }
}

/// A self-signed certificate for these host names (or IP addresses), for demos and tests
/// (feature `self-signed`).
#[cfg(feature = "self-signed")]
pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsError> {
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    Ok(SelfSigned {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
    })
}

/// The server name to verify for `host` (a DNS name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string())
        .map_err(|e| TlsError::Pem(format!("invalid server name: {e}")))
}

#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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
