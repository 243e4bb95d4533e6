//! What crosses the wire into a node's log: receipts from peers' trailers and
//! log entries from exports. Parsed or refused, never a panic; what an entry
//! decodes to encodes back to the same bytes.
#![no_main]

use lagesbild_audit::Entry;
use lagesbild_node::wire::parse_receipt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_receipt(text);
    }
    if let Ok(entry) = Entry::decode(data) {
        assert_eq!(
            entry.encode(),
            data,
            "an entry that decodes must be canonical"
        );
    }
});
