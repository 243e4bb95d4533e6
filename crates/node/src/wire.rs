//! What the access log needs from raw gRPC over HTTP/2, on both sides of a call:
//! digests of the bytes exactly as they cross the wire, the final status, and
//! the receipt a node attaches to its answers.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame};
use lagesbild_audit::entry::{hex, parse_hash_hex};
use lagesbild_audit::{Hash, Receipt};
use ring::digest::{Context, SHA256};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

/// Trailer (or, on a trailers-only answer, header) that carries a node's receipt:
/// `<log index> <leaf hash, hex> <checkpoint note, base64>`.
pub const RECEIPT_HEADER: &str = "lagesbild-receipt";

/// The receipt as a header value.
pub fn receipt_value(receipt: &Receipt) -> String {
    format!(
        "{} {} {}",
        receipt.index,
        hex(&receipt.leaf_hash),
        STANDARD.encode(receipt.checkpoint.as_bytes())
    )
}

/// A receipt read from a header value; `None` if it is not one.
pub fn parse_receipt(value: &str) -> Option<Receipt> {
    let mut parts = value.split(' ');
    let index = parts.next()?.parse().ok()?;
    let leaf_hash = parse_hash_hex(parts.next()?)?;
    let checkpoint = String::from_utf8(STANDARD.decode(parts.next()?).ok()?).ok()?;
    if parts.next().is_some() || checkpoint.len() > lagesbild_audit::checkpoint::MAX_NOTE_BYTES {
        return None;
    }
    Some(Receipt {
        index,
        leaf_hash,
        checkpoint,
    })
}

/// The receipt in a response's trailers or headers.
pub fn receipt_in(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> Option<Receipt> {
    trailers
        .and_then(|t| t.get(RECEIPT_HEADER))
        .or_else(|| headers.get(RECEIPT_HEADER))
        .and_then(|v| v.to_str().ok())
        .and_then(parse_receipt)
}

/// The gRPC status code in `headers`, if they carry one (a trailers-only answer).
pub fn header_code(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The gRPC status code and message of an answer: from the trailers, or from
/// the headers of a trailers-only answer. No status at all is `UNKNOWN`.
pub fn grpc_status(headers: &HeaderMap, trailers: Option<&HeaderMap>) -> (u32, String) {
    let source = trailers
        .filter(|t| t.contains_key("grpc-status"))
        .unwrap_or(headers);
    let code = source
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let message = source
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    (code, message)
}

/// The status a request gets whose message is over the size limit, if
/// `code` and `message` are tonic's report of one: `RESOURCE_EXHAUSTED` (as
/// gRPC itself uses for it) with a sentence a person reads, where tonic says
/// `OUT_OF_RANGE` in its own words.
pub fn oversize(code: u32, message: &str) -> Option<tonic::Status> {
    if code != tonic::Code::OutOfRange as u32 {
        return None;
    }
    let rest = message.strip_prefix("Error, decoded message length too large: found ")?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some(tonic::Status::resource_exhausted(format!(
        "the request message is {found} bytes; at most {limit} bytes are accepted in one message, so send it in smaller parts"
    )))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A running SHA-256 of the data frames of a body.
#[derive(Clone)]
pub struct Digest(Arc<Mutex<Context>>);

impl Default for Digest {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Context::new(&SHA256))))
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Digest")
    }
}

impl Digest {
    /// SHA-256 of what passed so far.
    pub fn finish(&self) -> Hash {
        let context = self.0.lock().expect("digest lock").clone();
        let mut out = [0u8; 32];
        out.copy_from_slice(context.finish().as_ref());
        out
    }

    /// Adds `bytes`.
    pub fn update(&self, bytes: &[u8]) {
        self.0.lock().expect("digest lock").update(bytes);
    }

    /// SHA-256 of `bytes` alone.
    pub fn of(bytes: &[u8]) -> Hash {
        lagesbild_audit::merkle::sha256(bytes)
    }
}

/// A body that feeds its data frames to a [`Digest`] as they pass.
pub struct Digesting<B> {
    inner: B,
    digest: Digest,
}

impl<B> Digesting<B> {
    /// Wraps `inner`; `digest` sees every data frame.
    pub fn new(inner: B, digest: Digest) -> Self {
        Self { inner, digest }
    }
}

impl<B> Body for Digesting<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.digest.0.lock().expect("digest lock").update(data);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Counts the gRPC messages of a body as its data frames pass (a message may
/// span frames, and a frame hold several).
#[derive(Debug, Default)]
pub struct MessageCounter {
    messages: u64,
    /// Bytes of the current message's body still to come.
    remaining: usize,
    /// The 5-byte prefix of the next message, as far as it has come.
    prefix: Vec<u8>,
}

impl MessageCounter {
    /// Takes in the next data frame.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                data = &data[take..];
                continue;
            }
            let take = (5 - self.prefix.len()).min(data.len());
            self.prefix.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.prefix.len() == 5 {
                self.messages += 1;
                self.remaining = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as usize;
                self.prefix.clear();
            }
        }
    }

    /// Messages begun so far.
    pub fn messages(&self) -> u64 {
        self.messages
    }
}

/// A body already read: its data, then its trailers.
pub struct Replay {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Replay {
    /// A body of `data` followed by `trailers`.
    pub fn new(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            data: (!data.is_empty()).then_some(data),
            trailers,
        }
    }
}

impl Body for Replay {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(data) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

/// The messages of a gRPC body (5-byte prefix each; uncompressed only).
pub fn grpc_messages(mut body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while body.len() >= 5 && body[0] == 0 {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let Some(message) = body.get(5..5 + len) else {
            break;
        };
        out.push(message);
        body = &body[5 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_round_trip_and_junk_is_not_one() {
        let receipt = Receipt {
            index: 12,
            leaf_hash: [7; 32],
            checkpoint: "o\n13\nAAAA\n\n\u{2014} o sig\n".into(),
        };
        assert_eq!(parse_receipt(&receipt_value(&receipt)), Some(receipt));
        assert_eq!(parse_receipt("12 zz abc"), None);
        assert_eq!(parse_receipt(""), None);
    }

    #[test]
    fn status_comes_from_trailers_or_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "7".parse().unwrap());
        headers.insert("grpc-message", "no%20policy%20for%20x".parse().unwrap());
        assert_eq!(grpc_status(&headers, None), (7, "no policy for x".into()));
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        assert_eq!(grpc_status(&HeaderMap::new(), Some(&trailers)).0, 0);
        assert_eq!(grpc_status(&HeaderMap::new(), None).0, 2);
    }

    #[test]
    fn messages_are_counted_across_frames() {
        let body = [0, 0, 0, 0, 2, 9, 9, 0, 0, 0, 0, 1, 5, 0, 0, 0, 0, 0];
        for cut in 0..body.len() {
            let mut counter = MessageCounter::default();
            counter.feed(&body[..cut]);
            counter.feed(&body[cut..]);
            assert_eq!(counter.messages(), 3, "cut at {cut}");
        }
    }

    #[test]
    fn grpc_frames_are_split() {
        let body = [0, 0, 0, 0, 2, 9, 9, 0, 0, 0, 0, 1, 5];
        assert_eq!(grpc_messages(&body), vec![&[9u8, 9][..], &[5u8][..]]);
    }
}
