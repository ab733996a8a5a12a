//! # pop3-tls
//!
//! rustls (ring provider) configuration shared by the pop3 adapters, whatever their runtime:
//! a verifying client configuration (Mozilla's roots, or a custom CA), a server configuration
//! from PEM files, and self-signed certificates for demos and tests. Skipping certificate
//! verification is possible only through the loudly named
//! [`Trust::DangerousAcceptAnyCertificate`].
//!
//! ```
//! let cert = pop3_tls::self_signed(&["localhost".into()]).unwrap();
//! let server = pop3_tls::server_config(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
//! let client = pop3_tls::client_config(&pop3_tls::Trust::CaPem(cert.cert_pem.into_bytes())).unwrap();
//! # let _ = (server, client);
//! ```

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
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

/// A self-signed certificate and its key, both PEM.
#[derive(Clone)]
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfSigned").finish_non_exhaustive()
    }
}

/// A self-signed certificate for these host names (or IP addresses), for demos and tests.
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

/// How a client protects its connection (the same for every adapter).
#[derive(Debug, Clone)]
pub enum TlsMode {
    /// No TLS at all. Passwords cross the network readable.
    Plain,
    /// TLS from the first byte (port 995, RFC 8314).
    Implicit(Arc<ClientConfig>),
    /// Plain text, then `STLS` (RFC 2595); an error if the server does not offer it, never a
    /// fallback to plain text.
    StartTls(Arc<ClientConfig>),
}

/// Client connection options, for every adapter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// TLS mode.
    pub tls: TlsMode,
    /// The name the certificate must match (and SNI); default: the host of the address.
    pub server_name: Option<String>,
    /// The protocol machine's configuration (limits, pipelining window, reply deadline).
    pub config: pop3_proto::client::ClientConfig,
    /// How long connecting (TCP and TLS) may take.
    pub connect_timeout: Duration,
}

impl ClientOptions {
    /// Options with this TLS mode and defaults for the rest.
    pub fn new(tls: TlsMode) -> Self {
        ClientOptions {
            tls,
            server_name: None,
            config: pop3_proto::client::ClientConfig::default(),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// Server accept-loop options, for every adapter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerOptions {
    /// Most connections served at once; more are answered `-ERR [SYS/TEMP]` and closed.
    pub max_connections: usize,
    /// A TLS configuration makes plain listeners offer `STLS`.
    pub tls: Option<Arc<ServerConfig>>,
    /// After shutdown is requested, how long sessions may go on before they are ended
    /// (without UPDATE).
    pub shutdown_grace: Duration,
    /// How long a TLS handshake may take (incomplete handshakes must not pin connections:
    /// CVE-2014-3430).
    pub handshake_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 1024,
            tls: None,
            shutdown_grace: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(30),
        }
    }
}

/// What went wrong in a client adapter (the same for every adapter).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The network.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// TLS configuration or server name.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server's certificate was refused (untrusted issuer, wrong name, expired...).
    #[error("TLS: the server's certificate was refused: {0}")]
    Certificate(String),
    /// The TLS handshake failed for another reason (the peer does not speak TLS there...).
    #[error("TLS handshake failed: {0}")]
    Handshake(String),
    /// The protocol machine refused a command or the server broke the protocol.
    #[error("protocol: {0}")]
    Protocol(#[from] pop3_proto::client::ClientError),
    /// The server answered `-ERR` (with its response code, if any).
    #[error("server said: -ERR {}{}", .0.code().map(|c| format!("[{}] ", String::from_utf8_lossy(c.as_bytes()))).unwrap_or_default(), .0.text())]
    Server(pop3_proto::StatusLine),
    /// STLS was required and the server does not offer it.
    #[error("the server does not offer STLS; refusing to continue in plain text")]
    TlsUnavailable,
    /// Connecting took too long.
    #[error("timed out")]
    Timeout,
    /// The session is closed.
    #[error("connection closed")]
    Closed,
    /// An invalid argument (a user name with a space, a password with a line end).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The caller's writer or callback failed.
    #[error("output: {0}")]
    Output(std::io::Error),
}

impl Error {
    /// The error of a failed TLS handshake: rustls' certificate verdicts and handshake errors
    /// arrive wrapped in `std::io::Error`; they are typed here, other I/O errors stay `Io`.
    pub fn from_handshake(e: std::io::Error) -> Error {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(rustls::Error::InvalidCertificate(c)) => Error::Certificate(format!("{c:?}")),
            Some(other) => Error::Handshake(other.to_string()),
            None => Error::Io(e),
        }
    }
}

/// The host part of `host:port` (IPv6 brackets removed), for SNI and certificate checks.
pub fn host_of(addr: &str) -> String {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// A fresh SASL client nonce (SCRAM): 18 random printable characters from the operating
/// system's random source.
pub fn client_nonce() -> Result<Vec<u8>, Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut raw = [0u8; 18];
    getrandom::fill(&mut raw).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    Ok(raw
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()])
        .collect())
}
