//! Who and why: the id of a member organisation ([`OrgId`]) and the purpose a
//! call claims ([`Purpose`]), checked once where they enter and typed after.

use std::fmt;
use std::ops::Deref;

/// Whether `s` is an id segment of the federation: a federation, org or
/// workload name. Lower-case ASCII letters, digits, `-`, `_`, `.`; 1 to 63 bytes
/// (it is a path segment of a SPIFFE id).
pub fn is_id_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// A text that is not the word it was read as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotA {
    what: &'static str,
    found: String,
    accepted: &'static str,
}

impl fmt::Display for NotA {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not {}: {} are accepted",
            self.found, self.what, self.accepted
        )
    }
}

impl std::error::Error for NotA {}

/// The id of a member organisation (`polisen`, `stockholm-stad`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrgId(String);

impl OrgId {
    /// `text` as an org id, or why not.
    pub fn parse(text: &str) -> Result<Self, NotA> {
        if is_id_segment(text) {
            Ok(Self(text.to_owned()))
        } else {
            Err(NotA {
                what: "an organisation id",
                found: text.chars().take(80).collect(),
                accepted: "1 to 63 lower-case letters, digits, '-', '_' and '.'",
            })
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Most bytes of a purpose.
pub const MAX_PURPOSE_BYTES: usize = 128;

/// Why a call is made (`situation-picture`, `ingest`): what a policy lists and
/// a token claims.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Purpose(String);

impl Purpose {
    /// `text` as a purpose, or why not.
    pub fn parse(text: &str) -> Result<Self, NotA> {
        if !text.is_empty()
            && text.len() <= MAX_PURPOSE_BYTES
            && !text.chars().any(char::is_control)
        {
            Ok(Self(text.to_owned()))
        } else {
            Err(NotA {
                what: "a purpose",
                found: text.chars().take(80).collect(),
                accepted: "1 to 128 bytes of text without control characters",
            })
        }
    }

    /// The purpose as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! text_word {
    ($name:ident) => {
        impl Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        /// As the quoted text, so messages that quote it stay as they were.
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl From<$name> for String {
            fn from(word: $name) -> String {
                word.0
            }
        }
    };
}

text_word!(OrgId);
text_word!(Purpose);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_ids_are_segments_and_purposes_are_plain_text() {
        assert_eq!(OrgId::parse("stockholm-stad").unwrap(), "stockholm-stad");
        for bad in ["", "Polisen", "a/b", "a b", &"x".repeat(64)] {
            let error = OrgId::parse(bad).unwrap_err().to_string();
            assert!(error.contains("is not an organisation id"), "{error}");
        }
        assert_eq!(
            Purpose::parse("situation-picture").unwrap().as_str(),
            "situation-picture"
        );
        assert!(Purpose::parse("tillsyn enligt 3 kap.").is_ok());
        for bad in ["", "a\nb", &"p".repeat(129)] {
            let error = Purpose::parse(bad).unwrap_err().to_string();
            assert!(error.contains("is not a purpose"), "{error}");
        }
    }
}
