//! Live events: what one peer may learn of one report as it happens.
//!
//! An event is the report generalised for one recipient: its cell at the
//! recipient's finest allowed size (never the position), the 15-minute slot of
//! the observation (never the time), an expiry, text only if the recipient may
//! have it and then only scrubbed, and a keyed-hash id different for every
//! recipient (never the report id). Reports marked above the recipient's
//! highest TLP, in a category it may not see, or already expired, make no event.

use crate::pseudonym::PeerPseudonyms;
use crate::scrub::{scrub, Known};
use lagesbild_geo::{Cell, CellSize, Sweref99Tm};
use std::collections::BTreeSet;

/// Events name time only by the 15-minute slot the observation falls in.
pub const SLOT_SECONDS: i64 = 15 * 60;

/// What an event may be made of: the report, as the node holds it.
#[derive(Debug, Clone)]
pub struct EventSource<'a> {
    /// The report's id (only ever hashed).
    pub local_id: &'a str,
    /// When it was observed, seconds since the epoch.
    pub observed_at: i64,
    /// Where, projected.
    pub position: Sweref99Tm,
    /// Category code.
    pub category: u8,
    /// Severity 1..=5.
    pub severity: u8,
    /// TLP level: 1 clear, 2 green, 3 amber, 4 amber+strict, 5 red; 0 unmarked.
    pub tlp: u8,
    /// The free text as written.
    pub text: &'a str,
    /// Names and plates the report itself holds, scrubbed wherever they appear.
    pub known: Known<'a>,
}

/// What one recipient may receive as events.
#[derive(Debug, Clone)]
pub struct EventRules {
    /// Categories it may see.
    pub categories: BTreeSet<u8>,
    /// The smallest cells it may receive.
    pub finest_cell: CellSize,
    /// The highest TLP level whose events it may receive (as [`EventSource::tlp`]).
    pub max_tlp: u8,
    /// Whether scrubbed text may go with the event.
    pub text: bool,
}

/// One event, as one recipient receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasedEvent {
    /// The recipient's pseudonym of the report.
    pub id: String,
    /// Category code.
    pub category: u8,
    /// Severity 1..=5.
    pub severity: u8,
    /// The cell at the recipient's finest allowed size.
    pub cell: Cell,
    /// Start of the 15-minute slot, seconds since the epoch.
    pub slot_start: i64,
    /// When the event is no longer current, seconds since the epoch.
    pub expires_at: i64,
    /// Scrubbed text, when allowed and there is any.
    pub text: Option<String>,
    /// The report's TLP level.
    pub tlp: u8,
}

/// The start of the 15-minute slot holding `seconds`.
pub fn slot_of(seconds: i64) -> i64 {
    seconds.div_euclid(SLOT_SECONDS) * SLOT_SECONDS
}

/// The event `source` makes for a recipient under `rules`, or `None` if it
/// makes none: marked above the recipient's TLP (or unmarked), a category it
/// may not see, off the grid, or expired by `now` (events live `lifetime_secs`
/// from the end of their slot).
pub fn release_event(
    source: &EventSource<'_>,
    rules: &EventRules,
    pseudonyms: &PeerPseudonyms,
    lifetime_secs: i64,
    now: i64,
) -> Option<ReleasedEvent> {
    if source.tlp == 0 || source.tlp > rules.max_tlp {
        return None;
    }
    if !rules.categories.contains(&source.category) {
        return None;
    }
    let slot_start = slot_of(source.observed_at);
    let expires_at = slot_start + SLOT_SECONDS + lifetime_secs;
    if expires_at <= now {
        return None;
    }
    let cell = Cell::containing_projected(source.position, rules.finest_cell)?;
    let text = rules
        .text
        .then(|| scrub(source.text, &source.known))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    Some(ReleasedEvent {
        id: pseudonyms.id(source.local_id),
        category: source.category,
        severity: source.severity,
        cell,
        slot_start,
        expires_at,
        text,
        tlp: source.tlp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pseudonym::Pseudonyms;
    use lagesbild_geo::project;
    use proptest::prelude::*;

    const NOW: i64 = 1_790_000_000;

    fn rules() -> EventRules {
        EventRules {
            categories: [1, 2].into(),
            finest_cell: CellSize::M250,
            max_tlp: 2,
            text: true,
        }
    }

    fn source<'a>(text: &'a str, observed_at: i64) -> EventSource<'a> {
        EventSource {
            local_id: "r-77",
            observed_at,
            position: project(59.3326, 18.0649),
            category: 1,
            severity: 4,
            tlp: 2,
            text,
            known: Known {
                names: vec!["Karin Lind"],
                plates: vec![],
            },
        }
    }

    #[test]
    fn an_event_is_generalised_scrubbed_and_pseudonymous() {
        let keys = Pseudonyms::new(&[3; 32]);
        let text = "Karin Lind 070-123 45 67 hotad vid Drottninggatan 53";
        let event = release_event(
            &source(text, NOW - 125),
            &rules(),
            &keys.for_peer("scandic"),
            4 * 3600,
            NOW,
        )
        .expect("an event");
        assert_eq!(event.slot_start % SLOT_SECONDS, 0);
        assert!(event.slot_start <= NOW - 125 && NOW - 125 < event.slot_start + SLOT_SECONDS);
        assert_eq!(event.cell.size, CellSize::M250);
        let text = event.text.unwrap();
        for secret in ["Karin", "Lind", "070", "53"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("Drottninggatan"));
        assert!(!event.id.contains("r-77"));
        assert_ne!(event.id, keys.for_peer("polisen").id("r-77"));
    }

    #[test]
    fn no_event_above_the_tlp_outside_the_categories_or_once_expired() {
        let keys = Pseudonyms::new(&[3; 32]).for_peer("scandic");
        let make = |s: &EventSource<'_>| release_event(s, &rules(), &keys, 3600, NOW);
        let mut amber = source("", NOW);
        amber.tlp = 3;
        assert_eq!(make(&amber), None);
        let mut unmarked = source("", NOW);
        unmarked.tlp = 0;
        assert_eq!(make(&unmarked), None);
        let mut theft = source("", NOW);
        theft.category = 3;
        assert_eq!(make(&theft), None);
        assert_eq!(make(&source("", NOW - 2 * 3600)), None);
        assert!(make(&source("", NOW - 1800)).is_some());
    }

    #[test]
    fn text_goes_only_where_allowed() {
        let keys = Pseudonyms::new(&[3; 32]).for_peer("scandic");
        let mut no_text = rules();
        no_text.text = false;
        let event = release_event(&source("bråk", NOW), &no_text, &keys, 3600, NOW).unwrap();
        assert_eq!(event.text, None);
    }

    proptest! {
        #[test]
        fn the_time_is_a_slot_and_the_cell_holds_the_position(
            observed in NOW - 3000..NOW,
            lat in 59.30f64..59.36,
            lon in 17.98f64..18.12,
            size in prop::sample::select(vec![CellSize::M100, CellSize::M250, CellSize::M500, CellSize::M1000]),
        ) {
            let keys = Pseudonyms::new(&[5; 32]).for_peer("scandic");
            let mut r = rules();
            r.finest_cell = size;
            let mut s = source("", observed);
            s.position = project(lat, lon);
            let event = release_event(&s, &r, &keys, 3600, NOW).unwrap();
            prop_assert_eq!(event.slot_start % SLOT_SECONDS, 0);
            prop_assert!(event.slot_start <= observed && observed - event.slot_start < SLOT_SECONDS);
            prop_assert_eq!(event.cell.size, size);
            let m = f64::from(size.metres());
            prop_assert!(f64::from(event.cell.easting) <= s.position.easting);
            prop_assert!(s.position.easting < f64::from(event.cell.easting) + m);
            prop_assert!(f64::from(event.cell.northing) <= s.position.northing);
            prop_assert!(s.position.northing < f64::from(event.cell.northing) + m);
        }
    }
}
