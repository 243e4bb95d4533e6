//! Checkpoints as C2SP `tlog-checkpoint` text, signed as a C2SP `signed-note`
//! with Ed25519.
//!
//! ```text
//! testfed/polisen/audit
//! 1204
//! 3q2+7w...=
//!
//! — testfed/polisen/audit Ab3x...
//! ```
//!
//! The signing key is the organisation's token key. A note body always holds
//! newlines and a JWT signing input never does, so no signature over one can be
//! passed off as a signature over the other.

use crate::merkle::Hash;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};

/// Longest note accepted.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;

/// Signature type identifier of Ed25519 in signed notes.
const ED25519_TYPE: u8 = 0x01;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What is wrong with a note or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// The text is not a well-formed checkpoint or note.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// No signature by the expected key.
    #[error("checkpoint has no signature by {0}")]
    Unsigned(String),
    /// A signature by the expected key that does not verify.
    #[error("checkpoint signature by {0} does not verify")]
    BadSignature(String),
    /// The checkpoint is of another log.
    #[error("checkpoint is of log {found:?}, expected {expected:?}")]
    WrongOrigin {
        /// The expected origin.
        expected: String,
        /// The origin in the note.
        found: String,
    },
    /// The key can not be used.
    #[error("key: {0}")]
    Key(String),
}

/// The statement a checkpoint makes: this log has `size` entries with this root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name.
    pub origin: String,
    /// Number of entries.
    pub size: u64,
    /// RFC 9162 root hash of the first `size` entries.
    pub root: Hash,
}

impl Checkpoint {
    /// The note body: origin, size and base64 root, each on its own line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    fn parse_body(body: &str) -> Result<Self, NoteError> {
        let bad = |m: &str| NoteError::Malformed(m.to_owned());
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size_line = lines.next().ok_or_else(|| bad("no size line"))?;
        if size_line.is_empty()
            || !size_line.bytes().all(|b| b.is_ascii_digit())
            || (size_line.len() > 1 && size_line.starts_with('0'))
        {
            return Err(bad("size is not a decimal number"));
        }
        let size = size_line
            .parse::<u64>()
            .map_err(|_| bad("size is out of range"))?;
        let root_line = lines.next().ok_or_else(|| bad("no root hash line"))?;
        let root: Hash = STANDARD
            .decode(root_line)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("root hash is not 32 bytes of base64"))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let mut bytes = Vec::with_capacity(name.len() + 2 + public_key.len());
    bytes.extend_from_slice(name.as_bytes());
    bytes.push(b'\n');
    bytes.push(ED25519_TYPE);
    bytes.extend_from_slice(public_key);
    let hash = crate::merkle::sha256(&bytes);
    [hash[0], hash[1], hash[2], hash[3]]
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(NoteError::Key(format!(
            "{name:?} is not a valid key name (no spaces or '+')"
        )));
    }
    Ok(())
}

/// Signs checkpoints of one log.
pub struct NoteSigner {
    name: String,
    key: Ed25519KeyPair,
    id: [u8; 4],
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer named `name` (the log's origin) with an Ed25519 PKCS#8 key in PEM.
    pub fn from_pem(name: &str, pem: &[u8]) -> Result<Self, NoteError> {
        check_name(name)?;
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| NoteError::Key(format!("no private key in PEM: {e}")))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = der else {
            return Err(NoteError::Key("expected a PKCS#8 Ed25519 key".into()));
        };
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.secret_pkcs8_der())
            .map_err(|e| NoteError::Key(format!("not an Ed25519 key: {e}")))?;
        let id = key_id(name, key.public_key().as_ref());
        Ok(Self {
            name: name.to_owned(),
            key,
            id,
        })
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.name
    }

    /// The verifier for this signer's signatures.
    pub fn verifier(&self) -> NoteVerifier {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.key.public_key().as_ref());
        NoteVerifier {
            name: self.name.clone(),
            public,
            id: self.id,
        }
    }

    /// The signed note for a checkpoint of this log of `size` entries and `root`.
    pub fn sign(&self, size: u64, root: Hash) -> String {
        let body = Checkpoint {
            origin: self.name.clone(),
            size,
            root,
        }
        .body();
        let signature = self.key.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(4 + 64);
        blob.extend_from_slice(&self.id);
        blob.extend_from_slice(signature.as_ref());
        format!("{body}\n\u{2014} {} {}\n", self.name, STANDARD.encode(blob))
    }
}

/// Checks checkpoints of one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    public: [u8; 32],
    id: [u8; 4],
}

impl NoteVerifier {
    /// A verifier for log `name` with an Ed25519 SubjectPublicKeyInfo in PEM.
    pub fn from_pem(name: &str, pem: &[u8]) -> Result<Self, NoteError> {
        check_name(name)?;
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|e| NoteError::Key(format!("no public key in PEM: {e}")))?;
        let der = spki.as_ref();
        if der.len() != 44 || der[..12] != ED25519_SPKI_PREFIX {
            return Err(NoteError::Key("not an Ed25519 public key".into()));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&der[12..]);
        Ok(Self {
            name: name.to_owned(),
            id: key_id(name, &public),
            public,
        })
    }

    /// The C2SP verifier key (vkey) of this key: `<name>+<key id, hex>+<base64
    /// of 0x01 and the Ed25519 public key>`, as the federation file publishes it.
    pub fn vkey(&self) -> String {
        let mut blob = Vec::with_capacity(33);
        blob.push(0x01);
        blob.extend_from_slice(&self.public);
        let id: String = self.id.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}+{id}+{}", self.name, STANDARD.encode(blob))
    }

    /// A verifier from a C2SP verifier key (see [`vkey`](Self::vkey)); its key
    /// id must be the one its name and key give.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let bad = |why: &str| NoteError::Key(format!("verifier key {vkey:?}: {why}"));
        // Names hold no '+'; base64 keys may.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<key id>+<key>"));
        };
        check_name(name)?;
        let blob = STANDARD
            .decode(key)
            .map_err(|_| bad("the key is not base64"))?;
        if blob.len() != 33 || blob[0] != 0x01 {
            return Err(bad("the key is not an Ed25519 key (type 0x01, 32 bytes)"));
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&blob[1..]);
        let verifier = Self {
            name: name.to_owned(),
            id: key_id(name, &public),
            public,
        };
        let expected: String = verifier.id.iter().map(|b| format!("{b:02x}")).collect();
        if id != expected {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(verifier)
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.name
    }

    /// Parses `note` and checks this key's signature; other signatures (say,
    /// cosignatures of witnesses) are ignored.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let bad = |m: &str| NoteError::Malformed(m.to_owned());
        if note.len() > MAX_NOTE_BYTES {
            return Err(bad("note is too long"));
        }
        let split = note
            .find("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures"))?;
        let body = &note[..=split];
        let signatures = &note[split + 2..];
        if !signatures.ends_with('\n') {
            return Err(bad("signature block does not end with a newline"));
        }
        let checkpoint = Checkpoint::parse_body(body)?;
        if checkpoint.origin != self.name {
            return Err(NoteError::WrongOrigin {
                expected: self.name.clone(),
                found: checkpoint.origin,
            });
        }
        let mut seen = false;
        for line in signatures[..signatures.len() - 1].split('\n') {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| bad("signature line does not start with an em dash"))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| bad("signature line has no signature"))?;
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| bad("signature is not base64"))?;
            if blob.len() < 5 {
                return Err(bad("signature is too short"));
            }
            if name != self.name || blob[..4] != self.id {
                continue;
            }
            seen = true;
            UnparsedPublicKey::new(&ED25519, &self.public)
                .verify(body.as_bytes(), &blob[4..])
                .map_err(|_| NoteError::BadSignature(self.name.clone()))?;
        }
        if !seen {
            return Err(NoteError::Unsigned(self.name.clone()));
        }
        Ok(checkpoint)
    }
}

/// The verifier of `org`'s access log from the verifier key the federation file
/// publishes for it; the key must name that log's origin.
pub fn log_verifier(federation: &str, org: &str, vkey: &str) -> Result<NoteVerifier, NoteError> {
    let verifier = NoteVerifier::from_vkey(vkey)?;
    let origin = origin_of(federation, org);
    if verifier.origin() != origin {
        return Err(NoteError::Key(format!(
            "the log key of {org} names {:?}, not its log {origin:?}",
            verifier.origin()
        )));
    }
    Ok(verifier)
}

/// The origin of the access log of `org` in federation `federation`.
pub fn origin_of(federation: &str, org: &str) -> String {
    format!("{federation}/{org}/audit")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixed Ed25519 test key (PKCS#8 v1, as `openssl genpkey` writes it).
    pub(crate) const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIOHaWrMWwg6ezaUR/h7TLOIoXIlX+NbUeqLV+Q+SVKPu\n-----END PRIVATE KEY-----\n";

    pub(crate) fn signer() -> NoteSigner {
        NoteSigner::from_pem("testfed/polisen/audit", TEST_KEY.as_bytes()).unwrap()
    }

    #[test]
    fn signed_checkpoints_verify_and_tampering_is_caught() {
        let signer = signer();
        let verifier = signer.verifier();
        let note = signer.sign(7, [3; 32]);
        let checkpoint = verifier.verify(&note).unwrap();
        assert_eq!(checkpoint.size, 7);
        assert_eq!(checkpoint.root, [3; 32]);
        assert!(note.starts_with("testfed/polisen/audit\n7\n"));

        let forged = note.replacen("\n7\n", "\n8\n", 1);
        assert_eq!(
            verifier.verify(&forged),
            Err(NoteError::BadSignature("testfed/polisen/audit".into()))
        );
        let other = NoteSigner::from_pem("testfed/other/audit", TEST_KEY.as_bytes()).unwrap();
        assert!(matches!(
            verifier.verify(&other.sign(7, [3; 32])),
            Err(NoteError::WrongOrigin { .. })
        ));
        let unsigned = note.split("\n\n").next().unwrap().to_owned() + "\n\n";
        assert!(verifier.verify(&unsigned).is_err());
        // A cosignature by some other key is ignored, not an error.
        let cosigned = format!("{note}\u{2014} witness.example AAAAAAAAAAAA\n");
        assert!(verifier.verify(&cosigned).is_ok());
        assert!(verifier.verify("nonsense").is_err());
        assert!(verifier.verify("").is_err());
    }

    #[test]
    fn size_must_be_canonical_decimal() {
        let body = "o\n007\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        assert!(Checkpoint::parse_body(body).is_err());
        let body = "o\n+7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        assert!(Checkpoint::parse_body(body).is_err());
    }

    #[test]
    fn a_verifier_key_round_trips_and_binds_its_name() {
        let signer = NoteSigner::from_pem("fed/org/a/audit", TEST_KEY.as_bytes()).unwrap();
        let vkey = signer.verifier().vkey();
        let verifier = NoteVerifier::from_vkey(&vkey).unwrap();
        assert_eq!(verifier, signer.verifier());
        let note = signer.sign(3, [7; 32]);
        assert_eq!(verifier.verify(&note).unwrap().size, 3);
        // Another name with the same key: the key id no longer matches.
        let renamed = vkey.replacen("fed/org/a/audit", "fed/org/b/audit", 1);
        assert!(NoteVerifier::from_vkey(&renamed).is_err());
        // A note by another key is refused by this one.
        let other = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPGY6ObutcdPiDKqP2Djog4htDLf0QLNoz/IKwZUkqGc\n-----END PRIVATE KEY-----\n";
        let forged = NoteSigner::from_pem("fed/org/a/audit", other.as_bytes())
            .unwrap()
            .sign(3, [7; 32]);
        assert!(verifier.verify(&forged).is_err());
    }
}
