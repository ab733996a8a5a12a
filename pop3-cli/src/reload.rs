//! What `SIGHUP` re-reads: the users file and every certificate, each swapped in whole for
//! the connections that start after it (sessions already open keep what they have), or, when
//! the new file is bad, logged and left as it was.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pop3_server_core::maildir::MaildirStore;
use pop3_server_core::offload::Offload;
use pop3_server_core::passwd::PasswdFile;
use pop3_server_core::reload::Reloadable;
use pop3_server_core::session::Backend;
use pop3_tls::ReloadableCert;
use rustls::ServerConfig;

use crate::config::{ListenerSpec, TlsMode};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The users, replaced on reload.
pub(crate) type Users = Reloadable<PasswdFile>;

/// Reads a certificate chain and its key (the key's copy is wiped once parsed).
fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>), String> {
    let c = std::fs::read(cert).map_err(|e| format!("cannot read {}: {e}", cert.display()))?;
    let k = std::fs::read(key).map_err(|e| format!("cannot read {}: {e}", key.display()))?;
    Ok((c, zeroize::Zeroizing::new(k)))
}

/// One certificate and key pair, shared by the listeners that name it.
struct Cert {
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<ReloadableCert>,
    config: Arc<ServerConfig>,
}

/// The certificates in use, each loaded once however many listeners use it.
#[derive(Default)]
pub(crate) struct Certs(Vec<Cert>);

impl Certs {
    /// The TLS configuration of a listener: `None` for `tls = "none"`.
    pub(crate) fn for_listener(
        &mut self,
        spec: &ListenerSpec,
    ) -> Result<Option<Arc<ServerConfig>>, Error> {
        match (&spec.cert, spec.tls) {
            (_, TlsMode::None) => Ok(None),
            (Some((cert, key)), _) => self.config(cert, key).map(Some),
            (None, _) => Err(format!(
                "listener {}: TLS needs a certificate (cert and key in the configuration, or \
                 --cert and --key)",
                spec.name
            )
            .into()),
        }
    }

    /// The server configuration over `cert` and `key`, loading them the first time.
    fn config(&mut self, cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, Error> {
        if let Some(c) = self.0.iter().find(|c| c.cert == cert && c.key == key) {
            return Ok(c.config.clone());
        }
        let (c, k) = read_pair(cert, key)?;
        let resolver = ReloadableCert::from_pem(&c, &k).map_err(|e| {
            format!(
                "certificate {} with key {}: {e}",
                cert.display(),
                key.display()
            )
        })?;
        let config = resolver.server_config()?;
        self.0.push(Cert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            resolver,
            config: config.clone(),
        });
        Ok(config)
    }
}

/// The users file and the backend whose users it replaces.
pub(crate) struct UsersFile {
    pub(crate) path: PathBuf,
    pub(crate) offload: Arc<dyn Offload>,
    pub(crate) backend: Arc<Backend<Users, MaildirStore>>,
}

/// Everything `SIGHUP` reloads.
pub(crate) struct Reloader {
    /// The users file, when the users come from one (not from a database).
    pub(crate) users: Option<UsersFile>,
    pub(crate) certs: Certs,
}

impl Reloader {
    /// Re-reads the users file and the certificates; what fails to load is logged and kept
    /// as it was. Whether everything was reloaded.
    pub(crate) fn reload(&self) -> bool {
        let mut ok = true;
        if let Some(u) = &self.users {
            match PasswdFile::load(&u.path) {
                Ok(file) => {
                    let users = file.len();
                    u.backend.auth.replace(file.with_offload(u.offload.clone()));
                    tracing::info!(file = %u.path.display(), users, "reload: users file read");
                }
                Err(e) => {
                    ok = false;
                    tracing::error!(
                        file = %u.path.display(),
                        error = %e,
                        "reload: users file refused, the previous users stay in force"
                    );
                }
            }
        }
        for c in &self.certs.0 {
            let loaded = read_pair(&c.cert, &c.key).and_then(|(cert, key)| {
                c.resolver
                    .replace_pem(&cert, &key)
                    .map_err(|e| e.to_string())
            });
            match loaded {
                Ok(()) => tracing::info!(
                    cert = %c.cert.display(),
                    key = %c.key.display(),
                    "reload: certificate read, new connections get it"
                ),
                Err(e) => {
                    ok = false;
                    tracing::error!(
                        cert = %c.cert.display(),
                        key = %c.key.display(),
                        error = %e,
                        "reload: certificate refused, the previous one stays in force"
                    );
                }
            }
        }
        ok
    }
}
