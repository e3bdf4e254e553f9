//! TLS for SASL_SSL: the server's acceptor from a PEM keystore, the client's connector
//! from a PEM truststore (or the system's roots). rustls with the ring provider.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::KeystoreSettings;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: not a PEM certificate list: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no PEM certificate found"));
    }
    Ok(certs)
}

/// The server side of SASL_SSL listeners, from `ssl.keystore.location` (chain and key in
/// one PEM file) or `ssl.keystore.certificate.chain` with `ssl.keystore.key`.
pub fn server_config(ks: &KeystoreSettings) -> Result<Arc<ServerConfig>, String> {
    let (chain, key): (Vec<u8>, Vec<u8>) = match (&ks.location, &ks.certificate_chain, &ks.key) {
        (Some(path), None, None) => {
            let pem = std::fs::read(path).map_err(|e| format!("ssl.keystore.location {path}: {e}"))?;
            (pem.clone(), pem)
        }
        (None, Some(chain), Some(key)) => (chain.as_bytes().to_vec(), key.as_bytes().to_vec()),
        _ => {
            return Err("a SASL_SSL listener needs ssl.keystore.location (PEM with chain and key), or \
                        ssl.keystore.certificate.chain with ssl.keystore.key"
                .into());
        }
    };
    let chain = certs(&chain, "ssl.keystore certificate chain")?;
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| format!("ssl.keystore key: no unencrypted PEM private key ({e})"))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("ssl.keystore: {e}"))?;
    Ok(Arc::new(config))
}

/// The client side: trust the PEM certificates given (a file's contents or inline text),
/// or the system's roots when none are given.
pub fn client_config(trusted_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match trusted_pem {
        Some(pem) => {
            for c in certs(pem, "truststore")? {
                roots.add(c).map_err(|e| format!("truststore: {e}"))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
