//! A deterministic generator of a realistic month in Stockholm's city centre.
//!
//! Each organisation sees what it would really see: the police the violence,
//! robberies, drugs and disorder peaking on weekend nights around Stureplan, Plattan
//! and T-Centralen; the property owner guard rounds, vandalism and dark stairs and
//! passages; retail daytime shoplifting and threats on the shopping streets; hotels
//! disorder near their entrances at night; the city lighting faults, dark areas
//! and littering. The same seed and end time give the same reports.
//!
//! Free text sometimes names people, identity numbers (with valid check digits),
//! phone numbers and plates, as real reports do, so every release path meets them.

use crate::places::place;
use crate::{Category, Person, Position, Report, Source, Tlp};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A small, fast, deterministic generator (SplitMix64); not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(f64::MIN_POSITIVE);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// When in the week something tends to happen.
#[derive(Debug, Clone, Copy)]
enum Rhythm {
    /// Nights, strongly on Friday and Saturday.
    Nightlife,
    /// Shop opening hours.
    ShopHours,
    /// The dark hours, when a missing light is noticed.
    Dark,
    /// Evenings and nights at hotel entrances.
    Evening,
    /// Any time.
    Anytime,
}

impl Rhythm {
    /// Relative weight of an hour; `weekday` 0 = Monday.
    fn weight(self, weekday: u32, hour: u32) -> f64 {
        let night = !(4..22).contains(&hour);
        // The small hours belong to the night before.
        let night_of = if hour < 4 { (weekday + 6) % 7 } else { weekday };
        let weekend_night = night && (night_of == 4 || night_of == 5);
        match self {
            Self::Nightlife if weekend_night => 12.0,
            Self::Nightlife if night => 3.0,
            Self::Nightlife => 0.6,
            Self::ShopHours if (10..19).contains(&hour) && weekday < 5 => 8.0,
            Self::ShopHours if (10..17).contains(&hour) => 10.0,
            Self::ShopHours => 0.2,
            Self::Dark if !(7..16).contains(&hour) => 5.0,
            Self::Dark => 0.5,
            Self::Evening if !(4..20).contains(&hour) => {
                if weekend_night {
                    8.0
                } else {
                    5.0
                }
            }
            Self::Evening => 1.0,
            Self::Anytime => 1.0,
        }
    }
}

/// One kind of report an organisation makes.
struct Pattern {
    category: Category,
    share: u32,
    places: &'static [&'static str],
    rhythm: Rhythm,
    severity: (u32, u32),
    source: Source,
    texts: &'static [&'static str],
}

const NIGHT_SPOTS: &[&str] = &[
    "Stureplan",
    "Plattan",
    "Sergels torg",
    "T-Centralen",
    "Kungsgatan",
];
const DRUG_SPOTS: &[&str] = &[
    "Plattan",
    "Sergels torg",
    "Malmskillnadsgatan",
    "Tunnelgatan",
    "T-Centralen",
];
const SHOPPING: &[&str] = &[
    "Drottninggatan",
    "Hamngatan",
    "Biblioteksgatan",
    "Gallerian",
    "Hötorget",
];
const PASSAGES: &[&str] = &[
    "Tunnelgatan",
    "Malmskillnadsgatan",
    "Klara kyrka",
    "Brunkebergstorg",
    "Kungsträdgården",
];
const ENTRANCES: &[&str] = &[
    "Vasagatan",
    "Stockholms centralstation",
    "Kungsgatan",
    "Norrmalmstorg",
];
const PROPERTIES: &[&str] = &[
    "Hötorget",
    "Gallerian",
    "Mäster Samuelsgatan",
    "Regeringsgatan",
    "Tunnelgatan",
];

fn patterns(org: &str) -> Vec<Pattern> {
    use Category::*;
    use Rhythm::*;
    let p = |category, share, places, rhythm, severity, source, texts| Pattern {
        category,
        share,
        places,
        rhythm,
        severity,
        source,
        texts,
    };
    match org {
        "polisen" => vec![
            p(
                Violence,
                30,
                NIGHT_SPOTS,
                Nightlife,
                (2, 5),
                Source::Patrol,
                &[
                    "Misshandel utanför krog, {person} förd till sjukhus.",
                    "Slagsmål mellan flera personer, en gripen ({pnr}).",
                ],
            ),
            p(
                Robbery,
                10,
                NIGHT_SPOTS,
                Nightlife,
                (3, 5),
                Source::Patrol,
                &["Rån mot person, mobiltelefon tagen. Målsägare {person}, tel {phone}."],
            ),
            p(
                Drugs,
                20,
                DRUG_SPOTS,
                Anytime,
                (2, 4),
                Source::Patrol,
                &["Misstänkt narkotikaförsäljning, {person} kontrollerad."],
            ),
            p(
                Disorder,
                25,
                NIGHT_SPOTS,
                Nightlife,
                (1, 3),
                Source::Patrol,
                &["Ordningsstörning, berusad person omhändertagen."],
            ),
            p(
                Threat,
                8,
                NIGHT_SPOTS,
                Nightlife,
                (2, 4),
                Source::Patrol,
                &["Olaga hot mot väktare, gärningsman {person} ({pnr})."],
            ),
            p(
                Weapons,
                4,
                NIGHT_SPOTS,
                Nightlife,
                (4, 5),
                Source::Patrol,
                &["Kniv påträffad vid kroppsvisitation."],
            ),
            p(
                Traffic,
                3,
                ENTRANCES,
                Anytime,
                (1, 3),
                Source::Patrol,
                &["Trafikolycka, bil {plate} körde in i cykelbana."],
            ),
        ],
        "stockholm-stad" => vec![
            p(
                LightingFault,
                40,
                PASSAGES,
                Dark,
                (1, 3),
                Source::Staff,
                &[
                    "Belysning ur funktion i gångpassage.",
                    "Trappbelysning släckt sedan flera dagar.",
                ],
            ),
            p(
                DarkArea,
                25,
                PASSAGES,
                Dark,
                (2, 3),
                Source::Citizen,
                &["Medborgare upplever platsen som mörk och otrygg."],
            ),
            p(
                Littering,
                20,
                SHOPPING,
                Anytime,
                (1, 2),
                Source::Staff,
                &["Nedskräpning runt papperskorgar."],
            ),
            p(
                Crowding,
                8,
                &["T-Centralen", "Kungsträdgården", "Sergels torg"],
                Evening,
                (1, 3),
                Source::Camera,
                &["Trängsel vid evenemang."],
            ),
            p(
                Vandalism,
                7,
                PASSAGES,
                Nightlife,
                (1, 3),
                Source::Staff,
                &["Klotter på fasad, anmält av {person}."],
            ),
        ],
        "amf-fastigheter" => vec![
            p(
                Disorder,
                25,
                PROPERTIES,
                Nightlife,
                (1, 3),
                Source::Guard,
                &["Väktarrond: personer som bråkar vid entrén."],
            ),
            p(
                Vandalism,
                20,
                PROPERTIES,
                Nightlife,
                (1, 3),
                Source::Guard,
                &["Krossad glasruta i port, kontakt {person} {phone}."],
            ),
            p(
                DarkArea,
                25,
                &["Tunnelgatan", "Malmskillnadsgatan", "Mäster Samuelsgatan"],
                Dark,
                (2, 3),
                Source::Guard,
                &["Mörk trappa mellan gatorna, saknar belysning."],
            ),
            p(
                Drugs,
                10,
                &["Tunnelgatan", "Malmskillnadsgatan"],
                Anytime,
                (2, 4),
                Source::Guard,
                &["Sprutor hittade i trapphus."],
            ),
            p(
                Littering,
                20,
                PROPERTIES,
                Anytime,
                (1, 2),
                Source::Guard,
                &["Nedskräpning i port."],
            ),
        ],
        "svensk-handel" => vec![
            p(
                Shoplifting,
                60,
                SHOPPING,
                ShopHours,
                (1, 3),
                Source::Staff,
                &[
                    "Snatteri, gärningsperson {person} ({pnr}) lämnade butiken.",
                    "Stöld av kläder, larm gick.",
                ],
            ),
            p(
                Threat,
                15,
                SHOPPING,
                ShopHours,
                (2, 4),
                Source::Staff,
                &["Personal hotad vid kassan av {person}."],
            ),
            p(
                Harassment,
                10,
                SHOPPING,
                ShopHours,
                (1, 3),
                Source::Staff,
                &["Kund trakasserade personal, ring {phone}."],
            ),
            p(
                Robbery,
                5,
                SHOPPING,
                ShopHours,
                (3, 5),
                Source::Camera,
                &["Butiksrån, gärningsman flydde i bil {plate}."],
            ),
            p(
                Vandalism,
                10,
                SHOPPING,
                Nightlife,
                (1, 2),
                Source::Staff,
                &["Skyltfönster sprayat."],
            ),
        ],
        "scandic" => vec![
            p(
                Disorder,
                50,
                ENTRANCES,
                Evening,
                (1, 3),
                Source::Staff,
                &[
                    "Berusade gäster bråkar vid entrén.",
                    "Störande personer i lobbyn, gäst {person} rum 412.",
                ],
            ),
            p(
                Theft,
                25,
                ENTRANCES,
                Anytime,
                (1, 3),
                Source::Staff,
                &["Väska stulen i lobbyn, gäst {person}, e-post {email}."],
            ),
            p(
                Harassment,
                15,
                ENTRANCES,
                Evening,
                (2, 3),
                Source::Staff,
                &["Gäst ofredad utanför hotellet."],
            ),
            p(
                Violence,
                10,
                ENTRANCES,
                Nightlife,
                (2, 4),
                Source::Staff,
                &["Slagsmål utanför entrén."],
            ),
        ],
        _ => vec![p(
            Other,
            1,
            SHOPPING,
            Anytime,
            (1, 3),
            Source::Staff,
            &["Observation."],
        )],
    }
}

/// How many reports an organisation makes in 30 days, in the demo.
pub fn demo_count(org: &str) -> usize {
    match org {
        "polisen" => 4_000,
        "svensk-handel" => 3_000,
        "amf-fastigheter" => 2_000,
        _ => 1_500,
    }
}

const FIRST: &[&str] = &[
    "Anna", "Erik", "Maria", "Johan", "Fatima", "Mohammed", "Sara", "Lars", "Elin", "Ali",
];
const LAST: &[&str] = &[
    "Andersson",
    "Johansson",
    "Karlsson",
    "Nilsson",
    "Eriksson",
    "Larsson",
    "Olsson",
    "Hassan",
    "Lindberg",
    "Berg",
];

/// A Swedish personal identity number `YYYYMMDD-NNNC` with a valid check digit.
pub fn personal_identity_number(rng: &mut Rng) -> String {
    let year = 1950 + rng.below(55);
    let month = 1 + rng.below(12);
    let day = 1 + rng.below(28);
    let serial = rng.below(1000);
    let nine = format!("{:02}{month:02}{day:02}{serial:03}", year % 100);
    format!("{year}{month:02}{day:02}-{serial:03}{}", luhn_digit(&nine))
}

/// The Luhn check digit of a string of digits.
pub fn luhn_digit(digits: &str) -> u32 {
    let sum: u32 = digits
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0') * if i % 2 == 0 { 2 } else { 1 };
            d / 10 + d % 10
        })
        .sum();
    (10 - sum % 10) % 10
}

fn plate(rng: &mut Rng) -> String {
    let letters: String = (0..3)
        .map(|_| (b'A' + rng.below(23) as u8) as char)
        .collect();
    if rng.below(2) == 0 {
        format!("{letters} {:03}", rng.below(1000))
    } else {
        format!(
            "{letters} {:02}{}",
            rng.below(100),
            (b'A' + rng.below(23) as u8) as char
        )
    }
}

/// `count` reports of `org` observed in the `days` before `end`.
pub fn generate(org: &str, seed: u64, count: usize, days: u32, end: SystemTime) -> Vec<Report> {
    let mut rng = Rng::new(
        seed ^ org.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }),
    );
    let patterns = patterns(org);
    let total_share: u32 = patterns.iter().map(|p| p.share).sum();
    let end_secs = end.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let span = u64::from(days) * 86_400;
    let start = end_secs.saturating_sub(span);
    let mut reports = Vec::with_capacity(count);
    while reports.len() < count {
        let mut roll = rng.below(u64::from(total_share)) as u32;
        let pattern = patterns
            .iter()
            .find(|p| {
                if roll < p.share {
                    true
                } else {
                    roll -= p.share;
                    false
                }
            })
            .expect("shares add up");
        // Rejection sampling of the time by the pattern's rhythm.
        let at = start + rng.below(span.max(1));
        let weekday = ((at / 86_400 + 3) % 7) as u32; // 1970-01-01 was a Thursday
        let local_hour = ((at / 3600 + 1) % 24) as u32; // CET
        if rng.unit() * 12.0 > pattern.rhythm.weight(weekday, local_hour) {
            continue;
        }
        let spot = place(rng.pick::<&str>(pattern.places)).expect("pattern places are known");
        let jitter_m = 35.0;
        let lat = spot.lat + rng.normal() * jitter_m / 111_320.0;
        let lon = spot.lon + rng.normal() * jitter_m / (111_320.0 * spot.lat.to_radians().cos());
        let (lo, hi) = pattern.severity;
        let severity = lo + rng.below(u64::from(hi - lo + 1)) as u32;
        let person_name = format!("{} {}", rng.pick::<&str>(FIRST), rng.pick::<&str>(LAST));
        let pnr = personal_identity_number(&mut rng);
        let phone = format!(
            "07{}-{:03} {:02} {:02}",
            rng.below(10),
            rng.below(1000),
            rng.below(100),
            rng.below(100)
        );
        let plate = plate(&mut rng);
        let template = *rng.pick::<&str>(pattern.texts);
        let text = template
            .replace("{person}", &person_name)
            .replace("{pnr}", &pnr)
            .replace("{phone}", &phone)
            .replace("{plate}", &plate)
            .replace(
                "{email}",
                &format!(
                    "{}@example.se",
                    person_name.to_lowercase().replace(' ', ".")
                ),
            );
        let mut persons = Vec::new();
        if template.contains("{person}") || template.contains("{pnr}") {
            persons.push(Person {
                name: person_name,
                personal_identity_number: if template.contains("{pnr}") {
                    pnr
                } else {
                    String::new()
                },
            });
        }
        let vehicle_plates = if template.contains("{plate}") {
            vec![plate]
        } else {
            Vec::new()
        };
        let roll = rng.below(20);
        let tlp = if org == "polisen" {
            if roll < 2 {
                Tlp::Red
            } else {
                Tlp::Amber
            }
        } else {
            match roll {
                0 => Tlp::Amber,
                1..=9 => Tlp::Green,
                _ => Tlp::Clear,
            }
        };
        let observed = UNIX_EPOCH + Duration::from_secs(at);
        let seconds = observed
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        reports.push(Report {
            id: format!("{org}-{seed}-{}", reports.len()),
            observed_at: Some(prost_types::Timestamp { seconds, nanos: 0 }),
            position: Some(Position { lat, lon }),
            place_name: spot.name.clone(),
            category: pattern.category as i32,
            severity,
            text,
            persons,
            vehicle_plates,
            source: pattern.source as i32,
            tlp: tlp as i32,
        });
    }
    reports
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::{validate_batch, Coverage, Rules};

    #[test]
    fn same_seed_same_reports() {
        let end = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        assert_eq!(
            generate("polisen", 7, 200, 30, end),
            generate("polisen", 7, 200, 30, end)
        );
        assert_ne!(
            generate("polisen", 7, 200, 30, end),
            generate("polisen", 8, 200, 30, end)
        );
    }

    #[test]
    fn generated_reports_are_valid_and_shaped() {
        let end = lagesbild_vocabulary::SystemClock.now();
        let rules = Rules {
            coverage: Coverage::STOCKHOLM_INNER_CITY,
            retention: Duration::from_secs(365 * 86_400),
        };
        for org in [
            "polisen",
            "stockholm-stad",
            "amf-fastigheter",
            "svensk-handel",
            "scandic",
        ] {
            let reports = generate(org, 1, 2000, 30, end);
            validate_batch(&reports, &rules, end, 0).unwrap();
        }
        // Shoplifting is a daytime thing; police violence peaks at night.
        let hour = |r: &Report| ((r.observed_at.as_ref().unwrap().seconds / 3600 + 1) % 24) as u32;
        let retail = generate("svensk-handel", 1, 2000, 30, end);
        let day = retail
            .iter()
            .filter(|r| r.category == Category::Shoplifting as i32)
            .filter(|r| (10..19).contains(&hour(r)))
            .count();
        let all = retail
            .iter()
            .filter(|r| r.category == Category::Shoplifting as i32)
            .count();
        assert!(
            day * 10 > all * 8,
            "{day} of {all} shoplifting in shop hours"
        );
        let police = generate("polisen", 1, 2000, 30, end);
        let violence: Vec<_> = police
            .iter()
            .filter(|r| r.category == Category::Violence as i32)
            .collect();
        let night = violence
            .iter()
            .filter(|r| hour(r) >= 22 || hour(r) < 4)
            .count();
        assert!(
            night * 2 > violence.len(),
            "{night} of {} at night",
            violence.len()
        );
    }

    #[test]
    fn identity_numbers_carry_a_valid_check_digit() {
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let pnr = personal_identity_number(&mut rng);
            let digits: String = pnr[2..].chars().filter(char::is_ascii_digit).collect();
            assert_eq!(
                luhn_digit(&digits[..9]),
                digits[9..].parse::<u32>().unwrap(),
                "{pnr}"
            );
        }
        assert_eq!(luhn_digit("811218987"), 6); // 811218-9876, the tax agency's example
    }
}
