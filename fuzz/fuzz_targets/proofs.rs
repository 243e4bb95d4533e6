//! Inclusion and consistency proofs of any shape against any sizes: checked or
//! refused, never a panic (no overflow, no out-of-range index).
#![no_main]

use lagesbild_audit::merkle::{verify_consistency, verify_inclusion};
use libfuzzer_sys::fuzz_target;

fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    for (i, b) in data.iter().skip(at).take(8).enumerate() {
        bytes[i] = *b;
    }
    u64::from_le_bytes(bytes)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (a, b) = (u64_at(data, 0), u64_at(data, 8));
    let hashes: Vec<[u8; 32]> = data[16..]
        .chunks_exact(32)
        .map(|c| c.try_into().unwrap())
        .collect();
    let (first, second) = match hashes.as_slice() {
        [x, y, ..] => (*x, *y),
        [x] => (*x, *x),
        [] => ([0; 32], [0; 32]),
    };
    let rest = hashes.get(2..).unwrap_or(&[]);
    let _ = verify_inclusion(&first, a, b, rest, &second);
    let _ = verify_consistency(a, b, &first, &second, rest);
    // Small trees too, where the loops actually run to the end.
    let _ = verify_inclusion(&first, a % 64, b % 64 + 1, rest, &second);
    let _ = verify_consistency(a % 64, b % 64 + a % 64, &first, &second, rest);
});
