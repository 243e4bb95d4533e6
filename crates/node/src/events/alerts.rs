//! Alert rules and playbooks: the coordinated plan, in node configuration.
//!
//! ```toml
//! [playbooks.violence-night]
//! actions = ["Police: patrol to the cell", "Property owners: lights on, guards told"]
//!
//! [[alerts]]
//! name = "violence at night around Sergels torg"
//! playbook = "violence-night"
//! categories = ["violence", "robbery"]   # empty or absent: any
//! min_severity = 3                       # absent: any
//! areas = ["Sergels torg"]               # named places; cells within radius_m
//! radius_m = 300
//! cells = ["250m:674250:6580750"]        # or grid cells; either matches
//! hours = "22-06"                        # local hours of the slot, start-end; absent: all day
//! ```
//! An event matches a rule when it matches every part the rule sets.

use lagesbild_geo::{project, Cell, CellSize};
use lagesbild_reports::category::parse_category;
use lagesbild_reports::places;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A playbook: the agreed actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// What each member does, in order.
    pub actions: Vec<String>,
}

/// An alert rule, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Its name, shown with the alert.
    pub name: String,
    /// The playbook whose actions the alert carries.
    pub playbook: String,
    /// Categories (names); empty for any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Lowest severity that matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<u32>,
    /// Named places; an event matches if its cell comes within `radius_m` of one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub areas: Vec<String>,
    /// How far around a named place, metres.
    #[serde(default = "default_radius")]
    pub radius_m: u32,
    /// Grid cells (`<size>m:<easting>:<northing>`); an event matches if its cell overlaps one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cells: Vec<String>,
    /// Local hours of the event's slot, `start-end` (wrapping past midnight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
}

fn default_radius() -> u32 {
    250
}

/// An alert rule that cannot be used: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alerts[{index}] ({name:?}): {problem}")]
pub struct InvalidAlertRule {
    /// Its place in the list.
    pub index: usize,
    /// Its name.
    pub name: String,
    /// What is wrong.
    pub problem: RuleProblem,
}

/// What is wrong with an alert rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleProblem {
    /// Its playbook is not defined.
    #[error("playbook {named:?} is not defined (defined: {defined})")]
    UnknownPlaybook {
        /// The name it gives.
        named: String,
        /// The names defined.
        defined: String,
    },
    /// A category name that does not exist.
    #[error("unknown category {0:?}")]
    UnknownCategory(String),
    /// A place name that is not known.
    #[error("unknown place {0:?}")]
    UnknownPlace(String),
    /// A cell that is not on the grid.
    #[error("cell {0:?} is not <100|250|500|1000>m:<easting>:<northing> on the grid")]
    Cell(String),
    /// Hours that are not a range.
    #[error("hours {0:?} is not START-END in whole hours 0-24")]
    Hours(String),
    /// A severity outside 1-5.
    #[error("min_severity {0} is not 1-5")]
    Severity(u32),
}

/// A rule, checked and ready to match.
#[derive(Debug, Clone)]
struct Rule {
    name: String,
    playbook: String,
    actions: Vec<String>,
    categories: Vec<u8>,
    min_severity: u32,
    /// SWEREF 99 TM (easting, northing) of each named place.
    areas: Vec<(f64, f64)>,
    radius_m: f64,
    cells: Vec<Cell>,
    /// Local hours [start, end), wrapping.
    hours: Option<(u32, u32)>,
}

/// What an alert is matched against: the event as received.
#[derive(Debug, Clone, Copy)]
pub struct EventFacts {
    /// Category code.
    pub category: u8,
    /// Severity.
    pub severity: u32,
    /// Its cell.
    pub cell: Cell,
    /// Start of its slot, seconds since the epoch.
    pub slot_start: i64,
}

/// A raised alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    /// The rule.
    pub rule: String,
    /// Its playbook.
    pub playbook: String,
    /// The playbook's actions.
    pub actions: Vec<String>,
}

/// The node's alert rules.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    rules: Vec<Rule>,
}

impl Alerts {
    /// Checks `rules` against `playbooks`; an error names the rule and what is wrong.
    pub fn new(
        rules: &[AlertRule],
        playbooks: &BTreeMap<String, Playbook>,
    ) -> Result<Self, InvalidAlertRule> {
        let mut checked = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let fail = |problem: RuleProblem| InvalidAlertRule {
                index,
                name: rule.name.clone(),
                problem,
            };
            let playbook = playbooks.get(&rule.playbook).ok_or_else(|| {
                fail(RuleProblem::UnknownPlaybook {
                    named: rule.playbook.clone(),
                    defined: playbooks.keys().cloned().collect::<Vec<_>>().join(", "),
                })
            })?;
            let categories = rule
                .categories
                .iter()
                .map(|name| {
                    parse_category(name)
                        .map(|c| c as i32 as u8)
                        .ok_or_else(|| fail(RuleProblem::UnknownCategory(name.clone())))
                })
                .collect::<Result<_, _>>()?;
            let areas = rule
                .areas
                .iter()
                .map(|name| {
                    places::place(name)
                        .map(|p| {
                            let at = project(p.lat, p.lon);
                            (at.easting, at.northing)
                        })
                        .ok_or_else(|| fail(RuleProblem::UnknownPlace(name.clone())))
                })
                .collect::<Result<_, _>>()?;
            let cells = rule
                .cells
                .iter()
                .map(|text| parse_cell(text).ok_or_else(|| fail(RuleProblem::Cell(text.clone()))))
                .collect::<Result<_, _>>()?;
            let hours = rule
                .hours
                .as_deref()
                .map(|text| parse_hours(text).ok_or_else(|| fail(RuleProblem::Hours(text.into()))))
                .transpose()?;
            if let Some(severity) = rule.min_severity {
                if !(1..=5).contains(&severity) {
                    return Err(fail(RuleProblem::Severity(severity)));
                }
            }
            checked.push(Rule {
                name: rule.name.clone(),
                playbook: rule.playbook.clone(),
                actions: playbook.actions.clone(),
                categories,
                min_severity: rule.min_severity.unwrap_or(1),
                areas,
                radius_m: f64::from(rule.radius_m),
                cells,
                hours,
            });
        }
        Ok(Self { rules: checked })
    }

    /// The alerts `event` raises.
    pub fn raised_by(&self, event: &EventFacts) -> Vec<Raised> {
        self.rules
            .iter()
            .filter(|rule| rule.matches(event))
            .map(|rule| Raised {
                rule: rule.name.clone(),
                playbook: rule.playbook.clone(),
                actions: rule.actions.clone(),
            })
            .collect()
    }
}

impl Rule {
    fn matches(&self, event: &EventFacts) -> bool {
        if !self.categories.is_empty() && !self.categories.contains(&event.category) {
            return false;
        }
        if event.severity < self.min_severity {
            return false;
        }
        let placed = self.areas.is_empty() && self.cells.is_empty()
            || self
                .areas
                .iter()
                .any(|&(e, n)| distance_to_cell(e, n, event.cell) <= self.radius_m)
            || self.cells.iter().any(|&c| overlap(c, event.cell));
        if !placed {
            return false;
        }
        match self.hours {
            None => true,
            Some((start, end)) => {
                let hour = lagesbild_privacy::calendar::local_hour(
                    u32::try_from(event.slot_start.max(0) / 3600).unwrap_or(u32::MAX),
                ) % 24;
                if start <= end {
                    (start..end).contains(&hour)
                } else {
                    hour >= start || hour < end
                }
            }
        }
    }
}

/// Metres from a point to the nearest point of a cell (0 inside it).
fn distance_to_cell(easting: f64, northing: f64, cell: Cell) -> f64 {
    let m = f64::from(cell.size.metres());
    let (e0, n0) = (f64::from(cell.easting), f64::from(cell.northing));
    let de = (e0 - easting).max(0.0).max(easting - (e0 + m));
    let dn = (n0 - northing).max(0.0).max(northing - (n0 + m));
    de.hypot(dn)
}

fn overlap(a: Cell, b: Cell) -> bool {
    let span = |c: Cell| {
        let m = c.size.metres();
        (c.easting, c.easting + m, c.northing, c.northing + m)
    };
    let (ae0, ae1, an0, an1) = span(a);
    let (be0, be1, bn0, bn1) = span(b);
    ae0 < be1 && be0 < ae1 && an0 < bn1 && bn0 < an1
}

/// `<size>m:<easting>:<northing>`, on the grid.
pub fn parse_cell(text: &str) -> Option<Cell> {
    let mut parts = text.split(':');
    let size = CellSize::from_metres(parts.next()?.strip_suffix('m')?.parse().ok()?)?;
    let easting: u32 = parts.next()?.parse().ok()?;
    let northing: u32 = parts.next()?.parse().ok()?;
    let m = size.metres();
    (parts.next().is_none() && easting.is_multiple_of(m) && northing.is_multiple_of(m)).then_some(
        Cell {
            size,
            easting,
            northing,
        },
    )
}

fn parse_hours(text: &str) -> Option<(u32, u32)> {
    let (start, end) = text.split_once('-')?;
    let (start, end): (u32, u32) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start <= 24 && end <= 24 && start != end).then_some((start % 24, end % 24))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alerts(rule: AlertRule) -> Alerts {
        let playbooks = [(
            "night".to_owned(),
            Playbook {
                actions: vec!["patrol".into(), "lights".into()],
            },
        )]
        .into();
        Alerts::new(&[rule], &playbooks).unwrap()
    }

    fn rule() -> AlertRule {
        AlertRule {
            name: "night violence".into(),
            playbook: "night".into(),
            categories: vec!["violence".into()],
            min_severity: Some(3),
            areas: vec!["Sergels torg".into()],
            radius_m: 300,
            cells: vec![],
            hours: Some("22-06".into()),
        }
    }

    fn at_sergels(hour_local_winter: i64, category: u8, severity: u32) -> EventFacts {
        let place = places::place("Sergels torg").unwrap();
        // 2026-01-15 00:00 UTC is 01:00 local (CET).
        let midnight_utc = 1_768_435_200;
        EventFacts {
            category,
            severity,
            cell: Cell::containing(place.lat, place.lon, CellSize::M250).unwrap(),
            slot_start: midnight_utc + (hour_local_winter - 1) * 3600,
        }
    }

    #[test]
    fn a_rule_matches_only_what_it_names() {
        let a = alerts(rule());
        let raised = a.raised_by(&at_sergels(23, 1, 4));
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].actions, vec!["patrol", "lights"]);
        assert!(
            a.raised_by(&at_sergels(2, 1, 4)).len() == 1,
            "wraps past midnight"
        );
        assert!(a.raised_by(&at_sergels(14, 1, 4)).is_empty(), "daytime");
        assert!(a.raised_by(&at_sergels(23, 3, 4)).is_empty(), "theft");
        assert!(a.raised_by(&at_sergels(23, 1, 2)).is_empty(), "too mild");
        let mut far = at_sergels(23, 1, 4);
        far.cell.northing += 2000;
        assert!(a.raised_by(&far).is_empty(), "2 km away");
    }

    #[test]
    fn bad_rules_are_named() {
        let playbooks = BTreeMap::new();
        let error = Alerts::new(&[rule()], &playbooks).unwrap_err();
        assert!(
            matches!(error.problem, RuleProblem::UnknownPlaybook { .. }) && error.index == 0,
            "{error}"
        );
        assert!(error.to_string().starts_with("alerts[0] "), "{error}");
        let mut bad = rule();
        bad.cells = vec!["250m:100:7".into()];
        let playbooks = [("night".to_owned(), Playbook { actions: vec![] })].into();
        let error = Alerts::new(&[bad], &playbooks).unwrap_err();
        assert_eq!(error.problem, RuleProblem::Cell("250m:100:7".into()));
        assert_eq!(parse_cell("250m:674250:6580750").unwrap().easting, 674_250);
        assert_eq!(parse_hours("22-06"), Some((22, 6)));
        assert_eq!(parse_hours("7-7"), None);
    }
}
