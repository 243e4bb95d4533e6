//! Event feeds: what the node released to each recipient, and what it received.
//!
//! ```text
//! o<recipient>\0<seq:u64be>   an item of a recipient's feed: expires:i64be ‖ record
//! s<recipient>                 the last seq of that feed (u64be; kept when items expire)
//! e<report id>                 who got an event of the report: recalled:u8 ‖ (len:u8 ‖ recipient ‖ seq:u64be)*
//! i<seq:u64be>                 an item received (the inbox): expires:i64be ‖ record
//! I                            the inbox's last seq
//! u<origin>                    the last seq of `origin`'s feed taken into the inbox
//! ```
//! Feed items are written in the same atomic batch as the report that made
//! them, so an acknowledged report's events are never lost, and an inbox item
//! with its origin's cursor, so an item is taken exactly once across restarts.
//! Records are opaque here: the node encodes them.

use crate::StoreError;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

pub(crate) const FEED_PREFIX: u8 = b'o';
pub(crate) const FEED_HEAD_PREFIX: u8 = b's';
pub(crate) const RECIPIENTS_PREFIX: u8 = b'e';
pub(crate) const INBOX_PREFIX: u8 = b'i';
pub(crate) const INBOX_HEAD: &[u8] = b"I";
pub(crate) const CURSOR_PREFIX: u8 = b'u';

/// An event for one recipient, to be kept in its feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The recipient org.
    pub recipient: String,
    /// When it stops being current (seconds since the epoch); purged after.
    pub expires_at: i64,
    /// The encoded item.
    pub record: Vec<u8>,
}

/// An item of a feed or of the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRecord {
    /// Its position.
    pub seq: u64,
    /// When it stops being current.
    pub expires_at: i64,
    /// The encoded item.
    pub record: Vec<u8>,
}

/// An item of another node's feed, to be taken into the inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Its position in the origin's feed for this node.
    pub origin_seq: u64,
    /// When it stops being current.
    pub expires_at: i64,
    /// The encoded item, as the inbox keeps it.
    pub record: Vec<u8>,
}

/// The outcome of a recall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecallOutcome {
    /// The report made no events (or is unknown).
    NoEvents,
    /// Recalled before; nothing was written.
    AlreadyRecalled,
    /// A recall went into the feed of each of this many recipients.
    Recalled {
        /// Feeds written to.
        recipients: u32,
    },
}

pub(crate) fn feed_key(recipient: &str, seq: u64) -> Vec<u8> {
    let mut key = feed_prefix(recipient);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn feed_prefix(recipient: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(recipient.len() + 10);
    key.push(FEED_PREFIX);
    key.extend_from_slice(recipient.as_bytes());
    key.push(0);
    key
}

pub(crate) fn feed_head_key(recipient: &str) -> Vec<u8> {
    [&[FEED_HEAD_PREFIX][..], recipient.as_bytes()].concat()
}

pub(crate) fn recipients_key(report_id: &str) -> Vec<u8> {
    [&[RECIPIENTS_PREFIX][..], report_id.as_bytes()].concat()
}

pub(crate) fn inbox_key(seq: u64) -> [u8; 9] {
    let mut key = [0; 9];
    key[0] = INBOX_PREFIX;
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

pub(crate) fn cursor_key(origin: &str) -> Vec<u8> {
    [&[CURSOR_PREFIX][..], origin.as_bytes()].concat()
}

pub(crate) fn encode_item(expires_at: i64, record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + record.len());
    out.extend_from_slice(&expires_at.to_be_bytes());
    out.extend_from_slice(record);
    out
}

pub(crate) fn decode_item(seq: u64, value: &[u8]) -> Result<FeedRecord, StoreError> {
    let (expires, record) = value
        .split_first_chunk::<8>()
        .ok_or_else(|| corrupt("feed item shorter than its header"))?;
    Ok(FeedRecord {
        seq,
        expires_at: i64::from_be_bytes(*expires),
        record: record.to_vec(),
    })
}

pub(crate) fn seq_of_key(key: &[u8]) -> Result<u64, StoreError> {
    key.last_chunk::<8>()
        .map(|b| u64::from_be_bytes(*b))
        .ok_or_else(|| corrupt("feed key without a sequence number"))
}

pub(crate) fn decode_u64(value: Option<&[u8]>) -> Result<u64, StoreError> {
    match value {
        None => Ok(0),
        Some(bytes) => <[u8; 8]>::try_from(bytes)
            .map(u64::from_be_bytes)
            .map_err(|_| corrupt("feed head of the wrong length")),
    }
}

/// Who got an event of one report, and whether it was recalled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Recipients {
    pub(crate) recalled: bool,
    pub(crate) feeds: Vec<(String, u64)>,
}

impl Recipients {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = vec![u8::from(self.recalled)];
        for (recipient, seq) in &self.feeds {
            // Org ids are short; longer ones can't be members.
            let name = &recipient.as_bytes()[..recipient.len().min(255)];
            out.push(name.len() as u8);
            out.extend_from_slice(name);
            out.extend_from_slice(&seq.to_be_bytes());
        }
        out
    }

    pub(crate) fn decode(value: &[u8]) -> Result<Self, StoreError> {
        let (&recalled, mut rest) = value
            .split_first()
            .ok_or_else(|| corrupt("empty recipients record"))?;
        let mut feeds = Vec::new();
        while let Some((&len, tail)) = rest.split_first() {
            let len = usize::from(len);
            if tail.len() < len + 8 {
                return Err(corrupt("truncated recipients record"));
            }
            let name = String::from_utf8(tail[..len].to_vec())
                .map_err(|_| corrupt("recipient is not UTF-8"))?;
            let seq = u64::from_be_bytes(tail[len..len + 8].try_into().expect("8 bytes"));
            feeds.push((name, seq));
            rest = &tail[len + 8..];
        }
        Ok(Self {
            recalled: recalled != 0,
            feeds,
        })
    }
}

/// The last seq of each feed and of the inbox, for readers waiting on new items.
/// Advanced only after the items are on disk.
#[derive(Debug)]
pub(crate) struct Heads {
    feeds: Mutex<HashMap<String, watch::Sender<u64>>>,
    inbox: watch::Sender<u64>,
}

impl Heads {
    /// Heads as stored: the inbox's and every feed's that has one.
    pub(crate) fn new(inbox: u64, feeds: HashMap<String, u64>) -> Self {
        Self {
            feeds: Mutex::new(
                feeds
                    .into_iter()
                    .map(|(recipient, head)| (recipient, watch::channel(head).0))
                    .collect(),
            ),
            inbox: watch::channel(inbox).0,
        }
    }

    /// The head of `recipient`'s feed (0 for a feed that has no item yet).
    /// Every stored head was loaded at open, so this never reads the disk.
    pub(crate) fn feed(&self, recipient: &str) -> watch::Receiver<u64> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        feeds
            .entry(recipient.to_owned())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub(crate) fn advance_feed(&self, recipient: &str, seq: u64) {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        match feeds.get(recipient) {
            Some(sender) => advance(sender, seq),
            None => {
                feeds.insert(recipient.to_owned(), watch::channel(seq).0);
            }
        }
    }

    pub(crate) fn inbox(&self) -> watch::Receiver<u64> {
        self.inbox.subscribe()
    }

    pub(crate) fn advance_inbox(&self, seq: u64) {
        advance(&self.inbox, seq);
    }
}

fn advance(sender: &watch::Sender<u64>, seq: u64) {
    sender.send_if_modified(|head| {
        let moved = seq > *head;
        *head = (*head).max(seq);
        moved
    });
}

fn corrupt(reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: "feeds".into(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_round_trip() {
        let r = Recipients {
            recalled: true,
            feeds: vec![("polisen".into(), 7), ("scandic".into(), u64::MAX)],
        };
        assert_eq!(Recipients::decode(&r.encode()).unwrap(), r);
        assert!(Recipients::decode(&[0, 5, b'a']).is_err());
    }

    #[test]
    fn feed_keys_sort_by_recipient_then_seq() {
        assert!(feed_key("a", 2) < feed_key("a", 10));
        assert!(feed_key("a", u64::MAX) < feed_key("ab", 0));
        assert_eq!(seq_of_key(&feed_key("x", 42)).unwrap(), 42);
    }
}
