//! TLS for the network sources (`syslog` over TCP — RFC 5425 — and `tcp`):
//! `tls = { cert_file = "…", key_file = "…" }`, PEM files (a certificate chain, and a
//! PKCS#8, PKCS#1 or SEC1 private key), served with rustls over ring.

use crate::config::Problems;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

#[derive(PartialEq, Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
}

impl TlsConfig {
    /// Checks that the files load into a server configuration, naming the key at fault.
    pub fn validate(&self, problems: &mut Problems) {
        if let Err((key, message)) = self.acceptor() {
            problems.at_path(&["tls", key], message);
        }
    }

    /// The acceptor; `Err((key, message))` names the setting at fault.
    pub fn acceptor(&self) -> Result<TlsAcceptor, (&'static str, String)> {
        let at = |key, path: &PathBuf, e: &dyn std::fmt::Display| {
            (key, format!("{}: {e}", path.display()))
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_file)
            .and_then(|certs| certs.collect())
            .map_err(|e| at("cert_file", &self.cert_file, &e))?;
        if certs.is_empty() {
            return Err(at(
                "cert_file",
                &self.cert_file,
                &"no PEM certificate in it",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| at("key_file", &self.key_file, &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ("cert_file", e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                at(
                    "key_file",
                    &self.key_file,
                    &format!("does not go with the certificate: {e}"),
                )
            })?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}
