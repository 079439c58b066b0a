//! TLS, with rustls: the certificate an edge serves HTTPS with, and what a client trusts.
//!
//! A server's certificate chain and key are PEM files (`RAFFLE_INGEST_TLS_CERT` and
//! `RAFFLE_INGEST_TLS_KEY`, the admin API's likewise); a client trusts the CA or certificate
//! it is given (a device enrolled with `--ca`), else the operating system's roots.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("TLS key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file, in order.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::Certificate {
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// What a server answers TLS with: its chain and its key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            TlsError::Config(format!("the certificate and key do not go together: {e}"))
        })?;
    Ok(Arc::new(config))
}

/// The server configuration from the variables `cert_var` and `key_var` (paths of PEM files),
/// when both are set; an error naming the variable when only one is.
pub fn server_config_from_env(
    cert_var: &str,
    key_var: &str,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (var(cert_var), var(key_var)) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => server_config(Path::new(&cert), Path::new(&key)).map(Some),
        (Some(_), None) => Err(TlsError::Config(format!(
            "{cert_var} is set but {key_var} is not"
        ))),
        (None, Some(_)) => Err(TlsError::Config(format!(
            "{key_var} is set but {cert_var} is not"
        ))),
    }
}

/// What a client trusts: the certificates of `ca_pem` (PEM text of a CA, or of the server's
/// own certificate), else the operating system's roots.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            let err = |reason: String| TlsError::Certificate {
                path: "the configured CA".into(),
                reason,
            };
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(e.to_string()))?;
            if certs.is_empty() {
                return Err(err("holds no PEM certificate".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| err(e.to_string()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TlsError::Config(
                    "no CA given and the operating system has no root certificates".into(),
                ));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
