//! A signed note of any content checked as a checkpoint: accepted only with a
//! valid signature of the key, refused otherwise, never a panic. Half the inputs
//! are a body signed for real, so the parser past the signature is reached.
#![no_main]

use base64::Engine;
use lagesbild_audit::NoteSigner;
use libfuzzer_sys::fuzz_target;
use ring::signature::{Ed25519KeyPair, KeyPair};
use std::sync::OnceLock;

const ORIGIN: &str = "fuzz/org/audit";

fn signer() -> &'static (NoteSigner, Ed25519KeyPair) {
    static SIGNER: OnceLock<(NoteSigner, Ed25519KeyPair)> = OnceLock::new();
    SIGNER.get_or_init(|| {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let _ = key.public_key();
        (NoteSigner::from_pem(ORIGIN, pem.as_bytes()).unwrap(), key)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (signer, _) = signer();
    let verifier = signer.verifier();
    if mode % 2 == 0 {
        let _ = verifier.verify(text);
        return;
    }
    // A real note whose body is altered by the input: must fail unless unchanged.
    let size = rest.len() as u64;
    let note = signer.sign(size, [rest.first().copied().unwrap_or(0); 32]);
    let mut changed = note.clone();
    changed.insert_str(note.find('\n').unwrap_or(0), text);
    match verifier.verify(&changed) {
        Ok(_) => assert!(text.is_empty(), "an altered note verified"),
        Err(_) => {}
    }
    assert!(verifier.verify(&note).is_ok());
});
