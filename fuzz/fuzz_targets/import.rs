//! The importers (CSV, JSON lines, the police's feed) on any text: reports or
//! line errors, never a panic.
#![no_main]

use lagesbild_reports::import::{read, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let format = match selector % 3 {
        0 => Format::Csv,
        1 => Format::JsonLines,
        _ => Format::Polisen,
    };
    let _ = read(format, text);
});
