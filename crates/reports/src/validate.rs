//! The checks every incoming report passes before it is stored.
//!
//! A batch is checked whole: every problem of every report is listed by index,
//! field and reason, and a batch with any problem stores nothing.

use crate::{Category, Report, Source, Tlp};
use lagesbild_geo::{project, Cell, CellSize};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A report that passed every check, with the keys derived from it: what a
/// node stores (the store adds its events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidReport {
    /// The client-supplied id.
    pub id: String,
    /// Hours since the Unix epoch of `observed_at`.
    pub hour: u32,
    /// Category code (1..=255).
    pub category: u8,
    /// Severity 1..=5.
    pub severity: u8,
    /// The 100 m cell of the position.
    pub cell100: Cell,
    /// The 250 m cell of the position.
    pub cell250: Cell,
    /// The encoded report, stored as is.
    pub payload: Vec<u8>,
}

/// Longest report id, bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Longest free text, bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Longest place name or person name, bytes.
pub const MAX_NAME_BYTES: usize = 200;
/// Most persons or plates in one report.
pub const MAX_LIST_LEN: usize = 50;
/// Most reports in one batch.
pub const MAX_BATCH: usize = 10_000;
/// How far in the future an observation may lie (clock skew).
pub const MAX_FUTURE_SKEW: Duration = Duration::from_secs(300);

/// The area a node accepts reports from, in WGS84 degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    /// Southern edge, degrees north.
    pub south: f64,
    /// Western edge, degrees east.
    pub west: f64,
    /// Northern edge, degrees north.
    pub north: f64,
    /// Eastern edge, degrees east.
    pub east: f64,
}

impl Coverage {
    /// Stockholm's inner city (Norrmalm, Södermalm, Östermalm, Kungsholmen, Gamla stan).
    pub const STOCKHOLM_INNER_CITY: Self = Self {
        south: 59.30,
        west: 17.98,
        north: 59.36,
        east: 18.12,
    };

    /// Whether a position lies inside.
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        (self.south..=self.north).contains(&lat) && (self.west..=self.east).contains(&lon)
    }

    /// Whether the area is a proper box on the globe.
    pub fn is_valid(&self) -> bool {
        [self.south, self.north]
            .iter()
            .all(|v| (-90.0..=90.0).contains(v))
            && [self.west, self.east]
                .iter()
                .all(|v| (-180.0..=180.0).contains(v))
            && self.south < self.north
            && self.west < self.east
    }
}

/// What a node accepts.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Where reports may come from.
    pub coverage: Coverage,
    /// How old an observation may be.
    pub retention: Duration,
}

/// One problem with one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Index of the report in the batch (or stream).
    pub index: usize,
    /// The field, e.g. `severity` or `position.lat`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "report {} {}: {}", self.index, self.field, self.reason)
    }
}

/// Checks a batch; `first_index` is the index of its first report in the stream.
/// Returns the reports ready to store, or every problem found.
pub fn validate_batch(
    reports: &[Report],
    rules: &Rules,
    now: SystemTime,
    first_index: usize,
) -> Result<Vec<ValidReport>, Vec<Violation>> {
    if reports.len() > MAX_BATCH {
        return Err(vec![Violation {
            index: first_index,
            field: "reports".into(),
            reason: format!(
                "{} reports in one batch, more than the {MAX_BATCH} accepted",
                reports.len()
            ),
        }]);
    }
    let mut ready = Vec::with_capacity(reports.len());
    let mut violations = Vec::new();
    for (i, report) in reports.iter().enumerate() {
        match validate(report, rules, now) {
            Ok(new) => ready.push(new),
            Err(problems) => {
                violations.extend(problems.into_iter().map(|(field, reason)| Violation {
                    index: first_index + i,
                    field: field.to_owned(),
                    reason,
                }))
            }
        }
    }
    if violations.is_empty() {
        Ok(ready)
    } else {
        Err(violations)
    }
}

/// Checks one report; returns it ready to store, or (field, reason) per problem.
pub fn validate(
    report: &Report,
    rules: &Rules,
    now: SystemTime,
) -> Result<ValidReport, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    let mut problem = |field: &'static str, reason: String| problems.push((field, reason));

    if report.id.is_empty() {
        problem("id", "is empty".into());
    } else if report.id.len() > MAX_ID_BYTES {
        problem(
            "id",
            format!(
                "is {} bytes, more than the {MAX_ID_BYTES} accepted",
                report.id.len()
            ),
        );
    } else if report.id.chars().any(char::is_control) {
        problem("id", "contains control characters".into());
    }

    let observed = match &report.observed_at {
        None => {
            problem("observed_at", "is missing".into());
            None
        }
        Some(ts) if !(0..1_000_000_000).contains(&ts.nanos) || ts.seconds < 0 => {
            problem("observed_at", "is not a valid time".into());
            None
        }
        Some(ts) => {
            let at = UNIX_EPOCH + Duration::new(ts.seconds as u64, ts.nanos as u32);
            if at > now + MAX_FUTURE_SKEW {
                problem(
                    "observed_at",
                    format!(
                        "lies in the future (more than {} s ahead)",
                        MAX_FUTURE_SKEW.as_secs()
                    ),
                );
                None
            } else if now
                .duration_since(at)
                .is_ok_and(|age| age > rules.retention)
            {
                problem(
                    "observed_at",
                    format!(
                        "is older than the retention of {} days",
                        rules.retention.as_secs() / 86_400
                    ),
                );
                None
            } else {
                Some(ts.seconds as u64)
            }
        }
    };

    let cells = match &report.position {
        None => {
            problem("position", "is missing".into());
            None
        }
        Some(p) if !p.lat.is_finite() || !(-90.0..=90.0).contains(&p.lat) => {
            problem("position.lat", format!("{} is not a latitude", p.lat));
            None
        }
        Some(p) if !p.lon.is_finite() || !(-180.0..=180.0).contains(&p.lon) => {
            problem("position.lon", format!("{} is not a longitude", p.lon));
            None
        }
        Some(p) if !rules.coverage.contains(p.lat, p.lon) => {
            let c = rules.coverage;
            problem(
                "position",
                format!(
                    "{:.5},{:.5} is outside this node's coverage (lat {}..{}, lon {}..{})",
                    p.lat, p.lon, c.south, c.north, c.west, c.east
                ),
            );
            None
        }
        Some(p) => {
            let projected = project(p.lat, p.lon);
            match (
                Cell::containing_projected(projected, CellSize::M100),
                Cell::containing_projected(projected, CellSize::M250),
            ) {
                (Some(c100), Some(c250)) => Some((c100, c250)),
                _ => {
                    problem("position", "does not project onto SWEREF 99 TM".into());
                    None
                }
            }
        }
    };

    if report.place_name.len() > MAX_NAME_BYTES {
        problem(
            "place_name",
            format!("is longer than {MAX_NAME_BYTES} bytes"),
        );
    }
    let category = match Category::try_from(report.category) {
        Ok(Category::Unspecified) => {
            problem("category", "is missing".into());
            None
        }
        Ok(c) => Some(c),
        Err(_) => {
            problem(
                "category",
                format!("{} is not a known category", report.category),
            );
            None
        }
    };
    if !(1..=5).contains(&report.severity) {
        problem("severity", format!("{} is outside 1..5", report.severity));
    }
    if report.text.len() > MAX_TEXT_BYTES {
        problem(
            "text",
            format!(
                "is {} bytes, more than the {MAX_TEXT_BYTES} accepted",
                report.text.len()
            ),
        );
    }
    if report.persons.len() > MAX_LIST_LEN {
        problem("persons", format!("more than {MAX_LIST_LEN}"));
    }
    if report
        .persons
        .iter()
        .any(|p| p.name.len() > MAX_NAME_BYTES || p.personal_identity_number.len() > 32)
    {
        problem("persons", "a name or identity number is too long".into());
    }
    if report.vehicle_plates.len() > MAX_LIST_LEN {
        problem("vehicle_plates", format!("more than {MAX_LIST_LEN}"));
    }
    if report.vehicle_plates.iter().any(|p| p.len() > 16) {
        problem("vehicle_plates", "a plate is longer than 16 bytes".into());
    }
    match Source::try_from(report.source) {
        Ok(Source::Unspecified) => problem("source", "is missing".into()),
        Ok(_) => {}
        Err(_) => problem("source", format!("{} is not a known source", report.source)),
    }
    match Tlp::try_from(report.tlp) {
        Ok(Tlp::Unspecified) => problem("tlp", "is missing".into()),
        Ok(_) => {}
        Err(_) => problem("tlp", format!("{} is not a known TLP marking", report.tlp)),
    }

    match (problems.is_empty(), observed, cells, category) {
        (true, Some(seconds), Some((cell100, cell250)), Some(category)) => Ok(ValidReport {
            id: report.id.clone(),
            hour: (seconds / 3600) as u32,
            category: category as i32 as u8,
            severity: report.severity as u8,
            cell100,
            cell250,
            payload: report.encode_to_vec(),
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Position;

    fn rules() -> Rules {
        Rules {
            coverage: Coverage::STOCKHOLM_INNER_CITY,
            retention: Duration::from_secs(365 * 86_400),
        }
    }

    fn good(now: SystemTime) -> Report {
        let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 - 3600;
        Report {
            id: "r1".into(),
            observed_at: Some(prost_types::Timestamp {
                seconds: secs,
                nanos: 0,
            }),
            position: Some(Position {
                lat: 59.3324,
                lon: 18.0645,
            }),
            category: Category::Violence as i32,
            severity: 3,
            source: Source::Patrol as i32,
            tlp: Tlp::Amber as i32,
            ..Report::default()
        }
    }

    #[test]
    fn a_good_report_gets_its_keys() {
        let now = lagesbild_vocabulary::SystemClock.now();
        let new = validate(&good(now), &rules(), now).unwrap();
        assert_eq!(new.category, Category::Violence as i32 as u8);
        assert_eq!(new.cell100.easting % 100, 0);
        assert_eq!(new.cell250.northing % 250, 0);
    }

    #[test]
    fn every_problem_is_listed_by_index_and_field() {
        let now = lagesbild_vocabulary::SystemClock.now();
        let mut bad = good(now);
        bad.severity = 9;
        bad.category = 99;
        bad.position = Some(Position {
            lat: 57.7,
            lon: 11.97,
        });
        bad.observed_at.as_mut().unwrap().seconds += 86_400;
        bad.text = "x".repeat(MAX_TEXT_BYTES + 1);
        let errors = validate_batch(&[good(now), bad], &rules(), now, 10).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|v| (v.index, v.field.as_str())).collect();
        assert_eq!(
            fields,
            vec![
                (11, "observed_at"),
                (11, "position"),
                (11, "category"),
                (11, "severity"),
                (11, "text")
            ]
        );
        assert!(errors[0].reason.contains("future"));
        assert!(errors[1].reason.contains("outside"));
        // Problems are joined with ";" in a status message, so none holds one.
        for e in &errors {
            assert!(!e.to_string().contains(';'), "{e}");
        }
        let too_long_id = Report {
            id: "x".repeat(MAX_ID_BYTES + 1),
            ..good(now)
        };
        let errors = validate_batch(&[too_long_id], &rules(), now, 0).unwrap_err();
        assert!(!errors[0].to_string().contains(';'), "{}", errors[0]);
    }

    #[test]
    fn too_old_and_unset_fields_are_refused() {
        let now = lagesbild_vocabulary::SystemClock.now();
        let mut old = good(now);
        old.observed_at.as_mut().unwrap().seconds -= 400 * 86_400;
        old.tlp = 0;
        old.source = 0;
        let errors = validate(&old, &rules(), now).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, vec!["observed_at", "source", "tlp"]);
    }
}
