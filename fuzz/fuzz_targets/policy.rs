//! A policy file of any content: parsed or refused with a message, never a panic;
//! what parses keeps k at 3 or more.
#![no_main]

use lagesbild_policy::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = Policy::parse(text) {
        for peer in policy.peers.values() {
            assert!(peer.k.get() >= 3);
        }
    }
});
