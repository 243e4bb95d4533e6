//! Reading PEM certificates and keys from files, with errors that name the file.

use crate::IdentityError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;

/// Reads every certificate of a PEM file (leaf first).
pub fn load_certificate_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let bytes = std::fs::read(path).map_err(|e| IdentityError::io(path, e))?;
    parse_certificate_chain(&bytes).map_err(|m| IdentityError::bad_file(path, m))
}

/// Reads the one private key of a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, IdentityError> {
    let bytes = std::fs::read(path).map_err(|e| IdentityError::io(path, e))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| IdentityError::bad_file(path, format!("no usable private key: {e}")))
}

pub(crate) fn parse_certificate_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}
