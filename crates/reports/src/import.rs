//! Reading reports from files: CSV, JSON lines, and the police's public events JSON.
//!
//! Each reader returns every report it could read with its line (or element)
//! number, and every line it could not read with a clear reason, so the caller
//! decides whether a file with bad lines is loaded at all.

use crate::category::{parse_category, parse_source, parse_tlp};
use crate::{places, Category, Person, Position, Report, Source, Tlp};
use serde::Deserialize;
use std::collections::BTreeMap;
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header row.
    Csv,
    /// One JSON object per line.
    JsonLines,
    /// The police's public events feed: a JSON array of events.
    Polisen,
}

/// A line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line (CSV, JSON lines) or element (police feed) number.
    pub line: usize,
    /// The id of the report or event, where it could be read.
    pub id: Option<String>,
    /// What is wrong.
    pub reason: String,
}

/// What a file held.
#[derive(Debug, Default)]
pub struct Imported {
    /// Reports read, with their line numbers.
    pub reports: Vec<(usize, Report)>,
    /// Lines that could not be read.
    pub errors: Vec<LineError>,
    /// Lines deliberately left out (e.g. the feed's summaries), with why.
    pub skipped: Vec<LineError>,
    /// The police event type of each report read as `other` because the type
    /// has no category of its own, by the report's line.
    pub unmapped_types: BTreeMap<usize, String>,
}

/// Reads `text` in `format`.
pub fn read(format: Format, text: &str) -> Imported {
    match format {
        Format::Csv => read_csv(text),
        Format::JsonLines => read_json_lines(text),
        Format::Polisen => read_polisen(text),
    }
}

/// One report as CSV and JSON lines both write it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    id: String,
    observed_at: String,
    lat: f64,
    lon: f64,
    category: String,
    severity: u32,
    source: String,
    #[serde(default)]
    tlp: String,
    #[serde(default)]
    place_name: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    persons: Persons,
    #[serde(default)]
    vehicle_plates: Plates,
}

/// CSV writes `Name|identity number;Name|...`; JSON a list of objects.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Persons {
    Text(String),
    List(Vec<JsonPerson>),
}

/// CSV writes `ABC123;DEF45G`; JSON a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Plates {
    Text(String),
    List(Vec<String>),
}

impl Default for Persons {
    fn default() -> Self {
        Self::List(Vec::new())
    }
}

impl Default for Plates {
    fn default() -> Self {
        Self::List(Vec::new())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPerson {
    name: String,
    #[serde(default)]
    personal_identity_number: String,
}

impl Persons {
    fn into_persons(self) -> Vec<Person> {
        match self {
            Self::Text(text) => split_list(&text)
                .map(|p| {
                    let (name, pnr) = p.split_once('|').unwrap_or((p, ""));
                    Person {
                        name: name.trim().to_owned(),
                        personal_identity_number: pnr.trim().to_owned(),
                    }
                })
                .collect(),
            Self::List(list) => list
                .into_iter()
                .map(|p| Person {
                    name: p.name,
                    personal_identity_number: p.personal_identity_number,
                })
                .collect(),
        }
    }
}

impl Plates {
    fn into_plates(self) -> Vec<String> {
        match self {
            Self::Text(text) => split_list(&text).map(str::to_owned).collect(),
            Self::List(list) => list,
        }
    }
}

fn build(f: Record) -> Result<Report, String> {
    let observed_at = parse_rfc3339(&f.observed_at)?;
    let category = parse_category(&f.category).ok_or_else(|| {
        format!(
            "category {:?} is not one of the known categories",
            f.category
        )
    })?;
    let source =
        parse_source(&f.source).ok_or_else(|| format!("source {:?} is not known", f.source))?;
    // An unmarked report is treated as AMBER: shared only as far as AMBER allows.
    let tlp = if f.tlp.trim().is_empty() {
        Tlp::Amber
    } else {
        parse_tlp(&f.tlp).ok_or_else(|| format!("tlp {:?} is not a TLP marking", f.tlp))?
    };
    Ok(Report {
        id: f.id,
        observed_at: Some(observed_at),
        position: Some(Position {
            lat: f.lat,
            lon: f.lon,
        }),
        place_name: f.place_name,
        category: category as i32,
        severity: f.severity,
        text: f.text,
        persons: f.persons.into_persons(),
        vehicle_plates: f.vehicle_plates.into_plates(),
        source: source as i32,
        tlp: tlp as i32,
    })
}

fn parse_rfc3339(s: &str) -> Result<prost_types::Timestamp, String> {
    let at = OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map_err(|e| format!("observed_at {s:?} is not an RFC 3339 time ({e})"))?;
    Ok(timestamp(at))
}

fn timestamp(at: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.unix_timestamp(),
        nanos: at.nanosecond() as i32,
    }
}

fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(';').map(str::trim).filter(|p| !p.is_empty())
}

fn read_csv(text: &str) -> Imported {
    let mut out = Imported::default();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            out.errors.push(LineError {
                line: 1,
                id: None,
                reason: format!("no header row: {e}"),
            });
            return out;
        }
    };
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                out.errors.push(LineError {
                    line: e.position().map_or(0, |p| p.line() as usize),
                    id: None,
                    reason: csv_reason(&e),
                });
                continue;
            }
        };
        let line_no = record.position().map_or(0, |p| p.line() as usize);
        let result = record
            .deserialize::<Record>(Some(&headers))
            .map_err(|e| csv_reason(&e))
            .and_then(build);
        match result {
            Ok(report) => out.reports.push((line_no, report)),
            Err(reason) => out.errors.push(LineError {
                line: line_no,
                id: None,
                reason,
            }),
        }
    }
    out
}

fn csv_reason(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Deserialize { err, .. } => match err.field() {
            Some(field) => format!("column {}: {}", field + 1, err.kind()),
            None => err.kind().to_string(),
        },
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            format!("{len} fields where the header has {expected_len}")
        }
        _ => e.to_string(),
    }
}

fn read_json_lines(text: &str) -> Imported {
    let mut out = Imported::default();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let result = serde_json::from_str::<Record>(line)
            .map_err(|e| format!("not a report object: {e}"))
            .and_then(build);
        match result {
            Ok(report) => out.reports.push((line_no, report)),
            Err(reason) => out.errors.push(LineError {
                line: line_no,
                id: None,
                reason,
            }),
        }
    }
    out
}

#[derive(Debug, Deserialize)]
struct PolisenEvent {
    id: serde_json::Value,
    datetime: String,
    name: String,
    #[serde(default)]
    summary: String,
    #[serde(rename = "type")]
    kind: String,
    location: PolisenLocation,
}

#[derive(Debug, Deserialize)]
struct PolisenLocation {
    name: String,
    #[allow(dead_code)]
    gps: String,
}

/// The category of a police event type; `None` for types that are no incident
/// (summaries), `Some(Other)` for incidents without a category of their own.
pub fn polisen_category(kind: &str) -> Option<(Category, bool)> {
    let k = kind.to_lowercase().replace(',', " ");
    let k = k.split_whitespace().collect::<Vec<_>>().join(" ");
    let starts = |p: &str| k.starts_with(p);
    let mapped = if starts("sammanfattning") {
        return None;
    } else if starts("misshandel") || starts("våld/hot mot tjänsteman") || starts("mord/dråp") {
        Category::Violence
    } else if starts("rån") {
        Category::Robbery
    } else if starts("snatteri") {
        Category::Shoplifting
    } else if starts("larm") {
        // An alarm (intruder, fire, assault alarm) is a call-out, not a reported
        // crime, and most are false or technical: counting them as thefts or
        // fires would inflate those in the picture.
        Category::Other
    } else if starts("stöld") || starts("inbrott") || starts("bedrägeri") {
        Category::Theft
    } else if starts("skadegörelse") {
        Category::Vandalism
    } else if starts("narkotikabrott") {
        Category::Drugs
    } else if starts("ordningslagen") || starts("fylleri") || starts("bråk") || starts("berusad") {
        Category::Disorder
    } else if starts("olaga hot") || starts("hot") {
        Category::Threat
    } else if starts("ofredande") || starts("olaga intrång") {
        Category::Harassment
    } else if starts("våldtäkt") || starts("sexualbrott") {
        Category::SexualOffence
    } else if starts("vapenlagen")
        || starts("knivlagen")
        || starts("skottlossning")
        || starts("explosion")
    {
        Category::Weapons
    } else if starts("brand") {
        Category::Fire
    } else if starts("trafik") || starts("rattfylleri") || starts("olovlig körning") {
        Category::Traffic
    } else {
        return Some((Category::Other, false));
    };
    Some((mapped, true))
}

fn severity_of(category: Category) -> u32 {
    match category {
        Category::Robbery | Category::Weapons | Category::SexualOffence => 4,
        Category::Violence | Category::Threat | Category::Fire => 3,
        _ => 2,
    }
}

fn read_polisen(text: &str) -> Imported {
    let mut out = Imported::default();
    let events: Vec<serde_json::Value> = match serde_json::from_str(text) {
        Ok(events) => events,
        Err(e) => {
            out.errors.push(LineError {
                line: e.line(),
                id: None,
                reason: format!("not a JSON array of events: {e}"),
            });
            return out;
        }
    };
    for (i, value) in events.into_iter().enumerate() {
        let n = i + 1;
        let event: PolisenEvent = match serde_json::from_value(value) {
            Ok(e) => e,
            Err(e) => {
                out.errors.push(LineError {
                    line: n,
                    id: None,
                    reason: format!("not a police event: {e}"),
                });
                continue;
            }
        };
        let id = match &event.id {
            serde_json::Value::String(s) => format!("polisen-{s}"),
            other => format!("polisen-{other}"),
        };
        let Some((category, mapped)) = polisen_category(&event.kind) else {
            out.skipped.push(LineError {
                line: n,
                id: Some(id),
                reason: format!("{:?} is a summary, not an incident", event.kind),
            });
            continue;
        };
        if !mapped {
            out.unmapped_types.insert(n, event.kind.clone());
        }
        let published = match parse_polisen_datetime(&event.datetime) {
            Ok(t) => t,
            Err(reason) => {
                out.errors.push(LineError {
                    line: n,
                    id: Some(id),
                    reason,
                });
                continue;
            }
        };
        // `datetime` is when the event was published; the incident's own time is in `name`.
        let observed = incident_time(&event.name, published).unwrap_or(published);
        // `location.gps` is the municipality's centroid, never the scene: only a place
        // named in the text gives a position worth counting.
        let mentioned = places::mentioned_in(&format!("{} {}", event.summary, event.name));
        let Some(place) = mentioned else {
            out.errors.push(LineError {
                line: n,
                id: Some(id),
                reason: format!(
                    "no known place named in the event; its gps is the centroid of {:?}, not the scene",
                    event.location.name
                ),
            });
            continue;
        };
        out.reports.push((
            n,
            Report {
                id,
                observed_at: Some(timestamp(observed)),
                position: Some(Position {
                    lat: place.lat,
                    lon: place.lon,
                }),
                place_name: place.name.clone(),
                category: category as i32,
                severity: severity_of(category),
                text: event.summary,
                persons: Vec::new(),
                vehicle_plates: Vec::new(),
                source: Source::Patrol as i32,
                // The feed is public.
                tlp: Tlp::Clear as i32,
            },
        ));
    }
    out
}

/// `2026-03-20 22:41:05 +01:00`, the hour possibly without its leading zero.
fn parse_polisen_datetime(s: &str) -> Result<OffsetDateTime, String> {
    let bad = || format!("datetime {s:?} is not like \"2026-03-20 22:41:05 +01:00\"");
    let mut parts = s.split_whitespace();
    let (date, clock, offset) = (
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
    );
    let nums = |t: &str, sep: char| -> Result<Vec<i32>, String> {
        t.split(sep)
            .map(|n| n.parse::<i32>().map_err(|_| bad()))
            .collect()
    };
    let d = nums(date, '-')?;
    let c = nums(clock, ':')?;
    if d.len() != 3 || c.len() != 3 {
        return Err(bad());
    }
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let o = nums(offset.trim_start_matches(['+', '-']), ':')?;
    if o.len() != 2 {
        return Err(bad());
    }
    let month = Month::try_from(d[1] as u8).map_err(|_| bad())?;
    let date = Date::from_calendar_date(d[0], month, d[2] as u8).map_err(|_| bad())?;
    let time = Time::from_hms(c[0] as u8, c[1] as u8, c[2] as u8).map_err(|_| bad())?;
    let offset =
        UtcOffset::from_hms((sign * o[0]) as i8, (sign * o[1]) as i8, 0).map_err(|_| bad())?;
    Ok(PrimitiveDateTime::new(date, time).assume_offset(offset))
}

/// The incident time in an event name like `20 mars 22.15, Misshandel, Stockholm`,
/// in the year and offset of publication (the year before, if that is later).
fn incident_time(name: &str, published: OffsetDateTime) -> Option<OffsetDateTime> {
    const MONTHS: [&str; 12] = [
        "januari",
        "februari",
        "mars",
        "april",
        "maj",
        "juni",
        "juli",
        "augusti",
        "september",
        "oktober",
        "november",
        "december",
    ];
    let head = name.split(',').next()?;
    let mut words = head.split_whitespace();
    let day: u8 = words.next()?.parse().ok()?;
    let month_name = words.next()?.to_lowercase();
    let month = MONTHS.iter().position(|m| *m == month_name)? as u8 + 1;
    let (h, m) = words.next()?.split_once('.')?;
    let time = Time::from_hms(h.parse().ok()?, m.parse().ok()?, 0).ok()?;
    let month = Month::try_from(month).ok()?;
    let at = |year| {
        Date::from_calendar_date(year, month, day)
            .ok()
            .map(|d| PrimitiveDateTime::new(d, time).assume_offset(published.offset()))
    };
    let this_year = at(published.year())?;
    if this_year > published + time::Duration::hours(1) {
        at(published.year() - 1)
    } else {
        Some(this_year)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../tests/data/polisen-events-sample.json");

    #[test]
    fn the_police_sample_maps_types_places_and_times() {
        let imported = read(Format::Polisen, SAMPLE);
        // The fourth event names no place; the feed's gps is only the municipality.
        assert_eq!(imported.errors.len(), 1, "{:?}", imported.errors);
        assert_eq!(imported.errors[0].line, 4);
        assert!(imported.errors[0].reason.contains("centroid"));
        assert_eq!(imported.reports.len(), 3);
        let (_, first) = &imported.reports[0];
        assert_eq!(first.id, "polisen-501234");
        assert_eq!(first.category, Category::Violence as i32);
        assert_eq!(first.place_name, "Sergels torg");
        // 20 mars 22.15 +01:00, not the publication time 22:41:05.
        let expected = OffsetDateTime::parse("2026-03-20T22:15:00+01:00", &Rfc3339).unwrap();
        assert_eq!(
            first.observed_at.as_ref().unwrap().seconds,
            expected.unix_timestamp()
        );
        let categories: Vec<_> = imported.reports.iter().map(|(_, r)| r.category).collect();
        assert_eq!(
            categories,
            [Category::Violence, Category::Robbery, Category::Disorder].map(|c| c as i32)
        );
    }

    #[test]
    fn police_feed_quirks() {
        assert!(parse_polisen_datetime("2025-06-07 6:38:18 +02:00").is_ok());
        assert_eq!(polisen_category("Sammanfattning natt"), None);
        for (kind, expected) in [
            ("Rån, väpnat", (Category::Robbery, true)),
            ("Rån väpnat", (Category::Robbery, true)),
            ("Larm Inbrott", (Category::Other, true)),
            ("Larm inbrott", (Category::Other, true)),
            ("Larm, Överfall", (Category::Other, true)),
            ("Inbrott", (Category::Theft, true)),
            ("Djur skadat/omhändertaget", (Category::Other, false)),
        ] {
            assert_eq!(polisen_category(kind), Some(expected), "{kind}");
        }
        let published = parse_polisen_datetime("2026-01-01 00:30:00 +01:00").unwrap();
        let t = incident_time("31 december 23.50, Brand, Stockholm", published).unwrap();
        assert_eq!(t.year(), 2025);
    }

    #[test]
    fn csv_reads_and_names_bad_lines() {
        let text = "\
id,observed_at,lat,lon,category,severity,source,tlp,place_name,text,persons,vehicle_plates
a1,2026-11-20T22:10:00+01:00,59.3324,18.0645,violence,3,guard,amber,Plattan,Bråk,Anna Svensson|19800101-1234,ABC123
a2,yesterday,59.3324,18.0645,violence,3,guard,,,,,
a3,2026-11-20T22:10:00Z,59.3324,18.0645,mugging,3,guard,,,,,
a4,2026-11-20T22:10:00Z,59.3324,18.0645,theft,three,guard,,,,,
";
        let imported = read(Format::Csv, text);
        assert_eq!(imported.reports.len(), 1);
        let (line, report) = &imported.reports[0];
        assert_eq!(*line, 2);
        assert_eq!(report.persons[0].personal_identity_number, "19800101-1234");
        assert_eq!(report.vehicle_plates, vec!["ABC123"]);
        let errors: Vec<_> = imported.errors.iter().map(|e| e.line).collect();
        assert_eq!(errors, vec![3, 4, 5]);
        assert!(
            imported.errors[0].reason.contains("RFC 3339"),
            "{:?}",
            imported.errors[0]
        );
        assert!(imported.errors[1].reason.contains("mugging"));
    }

    #[test]
    fn json_lines_read_and_name_bad_lines() {
        let text = r#"{"id":"j1","observed_at":"2026-11-20T10:00:00Z","lat":59.33,"lon":18.06,"category":"shoplifting","severity":2,"source":"staff"}
{"id":"j2","observed_at":"2026-11-20T10:00:00Z","lat":59.33,"lon":18.06,"category":"shoplifting","severity":2,"source":"staff","colour":"red"}

not json
"#;
        let imported = read(Format::JsonLines, text);
        assert_eq!(imported.reports.len(), 1);
        assert_eq!(imported.reports[0].1.tlp, Tlp::Amber as i32);
        let errors: Vec<_> = imported.errors.iter().map(|e| e.line).collect();
        assert_eq!(errors, vec![2, 4]);
        assert!(imported.errors[0].reason.contains("colour"));
    }
}
