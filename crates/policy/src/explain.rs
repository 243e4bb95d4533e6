//! `policy explain`: exactly what one peer may receive now, in words and as JSON.

use crate::{PeerPolicy, Policy, Scope};
use lagesbild_geo::CELL_SIZES;
use lagesbild_privacy::calendar::{
    civil_from_days, local_day, offset_hours, start_of_local_day, BUCKET_KINDS,
};
use lagesbild_privacy::Epsilon;
use lagesbild_reports::category::parse_tlp;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// What a peer may receive, and what is left of its budget today.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The node whose policy this is.
    pub node: String,
    /// The peer.
    pub peer: String,
    /// Whether the policy names the peer at all.
    pub named: bool,
    /// Scopes it may use.
    pub scopes: Vec<String>,
    /// Purposes it may claim.
    pub purposes: Vec<String>,
    /// Categories it may see.
    pub categories: Vec<String>,
    /// Cell sizes it may receive, metres.
    pub cell_sizes: Vec<u32>,
    /// Bucket kinds it may receive.
    pub buckets: Vec<String>,
    /// Threshold.
    pub k: u32,
    /// Noise and budget, if the policy sets epsilon.
    pub noise: Option<NoiseExplanation>,
    /// Highest TLP marking of reports whose events it receives.
    pub max_tlp: String,
    /// Whether scrubbed text goes with its events.
    pub text: bool,
    /// Calls per minute.
    pub rate_limit_per_minute: u32,
    /// What the policy lets this peer combine in ways the threshold does not
    /// cover, in plain sentences.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Noise settings and today's budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseExplanation {
    /// Privacy loss of one query.
    pub epsilon_per_query: f64,
    /// Budget per local calendar day.
    pub epsilon_per_day: f64,
    /// Spent today.
    pub spent_today: f64,
    /// Left today.
    pub left_today: f64,
    /// Queries that still fit today.
    pub queries_left_today: u64,
    /// When the budget refills (next local midnight), RFC 3339.
    pub refills_at: String,
}

/// Local midnight after UTC hour `hour`, as RFC 3339 with the Swedish offset.
pub fn next_local_midnight(hour: u32) -> String {
    let day = local_day(hour) + 1;
    let (y, m, d) = civil_from_days(i64::from(day));
    let offset = offset_hours(start_of_local_day(day));
    format!("{y:04}-{m:02}-{d:02}T00:00:00+{offset:02}:00")
}

impl Explanation {
    /// What `peer` may receive under `policy` of `node`, with `spent_today` of its
    /// budget used, at UTC hour `now_hour`.
    pub fn of(
        policy: &Policy,
        node: &str,
        peer: &str,
        spent_today: Epsilon,
        now_hour: u32,
    ) -> Self {
        let Some(p) = policy.peer(peer) else {
            return Self::nothing(node, peer);
        };
        Self::of_peer(p, node, peer, spent_today, now_hour)
    }

    fn nothing(node: &str, peer: &str) -> Self {
        Self {
            node: node.to_owned(),
            peer: peer.to_owned(),
            named: false,
            scopes: vec![],
            purposes: vec![],
            categories: vec![],
            cell_sizes: vec![],
            buckets: vec![],
            k: 0,
            noise: None,
            max_tlp: "none".into(),
            text: false,
            rate_limit_per_minute: 0,
            warnings: vec![],
        }
    }

    fn of_peer(p: &PeerPolicy, node: &str, peer: &str, spent: Epsilon, now_hour: u32) -> Self {
        let noise = match (p.epsilon_per_query, p.epsilon_per_day) {
            (Some(query), Some(day)) => {
                let left = day.saturating_sub(spent);
                Some(NoiseExplanation {
                    epsilon_per_query: query.as_f64(),
                    epsilon_per_day: day.as_f64(),
                    spent_today: spent.as_f64(),
                    left_today: left.as_f64(),
                    queries_left_today: left.micros() / query.micros().max(1),
                    refills_at: next_local_midnight(now_hour),
                })
            }
            _ => None,
        };
        Self {
            node: node.to_owned(),
            peer: peer.to_owned(),
            named: true,
            scopes: p.scopes.iter().map(|s| s.name().to_owned()).collect(),
            purposes: p.purposes.iter().map(|p| p.to_string()).collect(),
            categories: p.category_names().into_iter().map(String::from).collect(),
            cell_sizes: CELL_SIZES
                .into_iter()
                .filter(|s| *s >= p.finest_cell && s.is_tiled_by(p.finest_cell))
                .map(|s| s.metres())
                .collect(),
            buckets: BUCKET_KINDS
                .into_iter()
                .filter(|b| b.allowed_under(p.finest_bucket))
                .map(|b| b.name().to_owned())
                .collect(),
            k: p.k.get(),
            noise,
            max_tlp: lagesbild_reports::category::tlp_name(p.max_tlp).to_owned(),
            text: p.text,
            rate_limit_per_minute: p.rate_limit,
            warnings: warnings(p),
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("an explanation serialises")
    }

    /// In plain words.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let (node, peer) = (&self.node, &self.peer);
        if !self.named {
            let _ = writeln!(
                out,
                "{peer} may receive nothing from {node}: the policy does not name it."
            );
            return out;
        }
        let list = |items: &[String]| {
            if items.is_empty() {
                "none".to_string()
            } else {
                items.join(", ")
            }
        };
        let _ = writeln!(
            out,
            "What {peer} may receive from {node} under the policy in force:"
        );
        let _ = writeln!(out, "  scopes:      {}", list(&self.scopes));
        let _ = writeln!(out, "  purposes:    {}", list(&self.purposes));
        let _ = writeln!(out, "  categories:  {}", list(&self.categories));
        let cells: Vec<String> = self.cell_sizes.iter().map(|m| format!("{m} m")).collect();
        let _ = writeln!(out, "  cells:       {}", list(&cells));
        let _ = writeln!(out, "  buckets:     {}", list(&self.buckets));
        let _ = writeln!(
            out,
            "  threshold:   counts below k = {} are withheld (not sent, not as zero)",
            self.k
        );
        match &self.noise {
            None => {
                let _ = writeln!(
                    out,
                    "  noise:       none; counts are exact once they reach k; no budget applies"
                );
            }
            Some(n) => {
                let _ = writeln!(
                    out,
                    "  noise:       integer (discrete Laplace), epsilon {} per query",
                    n.epsilon_per_query
                );
                let _ = writeln!(
                    out,
                    "  budget:      {} per day; spent today {}, left {} ({} queries); refills at {}",
                    n.epsilon_per_day, n.spent_today, n.left_today, n.queries_left_today, n.refills_at
                );
            }
        }
        let tlp_known = parse_tlp(&self.max_tlp).is_some();
        let _ = writeln!(
            out,
            "  events:      from reports marked up to TLP:{}{}; scrubbed text {}",
            self.max_tlp.to_uppercase(),
            if tlp_known { "" } else { " (unknown)" },
            if self.text {
                "included"
            } else {
                "never included"
            }
        );
        let _ = writeln!(
            out,
            "  rate limit:  {} calls per minute",
            self.rate_limit_per_minute
        );
        for warning in &self.warnings {
            let _ = writeln!(out, "  warning:     {warning}");
        }
        out
    }
}

/// Shapes the entry allows whose releases could not be kept consistent with
/// its others, and what the threshold then does not cover.
fn warnings(p: &PeerPolicy) -> Vec<String> {
    let mut out = Vec::new();
    let finest = p.finest_cell;
    let untiled: Vec<String> = CELL_SIZES
        .into_iter()
        .filter(|s| *s > finest && !s.is_tiled_by(finest))
        .map(|s| format!("{} m", s.metres()))
        .collect();
    if !untiled.is_empty() {
        out.push(format!(
            "finest_cell = {} allows {} in name only: those cells are not made of whole {} m cells, so their values could not be sums of released {} m values, and requests for them are refused",
            finest.metres(),
            untiled.join(" and "),
            finest.metres(),
            finest.metres()
        ));
    }
    if p.scopes.contains(&Scope::AggregateRead) && p.scopes.contains(&Scope::EventsRead) {
        out.push(format!(
            "it also receives events: every report of its categories marked up to TLP:{} reaches it one by one (cell and 15-minute slot), so k = {} does not hide those reports from it",
            lagesbild_reports::category::tlp_name(p.max_tlp).to_uppercase(),
            p.k
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_budget_and_limits() {
        let policy = Policy::parse(
            "version = 1\n[peer.polisen]\nscopes = [\"aggregate:read\"]\npurposes = [\"p\"]\ncategories = [\"theft\"]\nfinest_cell = 250\nfinest_bucket = \"day\"\nk = 4\nepsilon_per_query = 0.5\nepsilon_per_day = 2\n",
        )
        .unwrap();
        // 25 Nov 2026 10:00 UTC.
        let hour = 20_782 * 24 + 10;
        let e = Explanation::of(
            &policy,
            "scandic",
            "polisen",
            Epsilon::from_micros(500_000),
            hour,
        );
        assert_eq!(e.cell_sizes, [250, 500, 1000]);
        assert_eq!(e.buckets, ["day", "week"]);
        let noise = e.noise.as_ref().unwrap();
        assert_eq!((noise.left_today, noise.queries_left_today), (1.5, 3));
        assert_eq!(noise.refills_at, "2026-11-26T00:00:00+01:00");
        let text = e.to_text();
        assert!(
            text.contains("k = 4") && text.contains("left 1.5"),
            "{text}"
        );
        let back: Explanation = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(back, e);
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
        let none = Explanation::of(&policy, "scandic", "imy", Epsilon::ZERO, hour);
        assert!(!none.named);
        assert!(none.to_text().contains("nothing"));
    }

    #[test]
    fn warns_of_untiled_cells_and_of_events_beside_aggregates() {
        let policy = Policy::parse(
            "version = 1\n[peer.polisen]\nscopes = [\"aggregate:read\", \"events:read\"]\npurposes = [\"p\"]\ncategories = [\"theft\"]\nfinest_cell = 100\nfinest_bucket = \"hour\"\nk = 4\nmax_tlp = \"amber\"\n",
        )
        .unwrap();
        let e = Explanation::of(&policy, "scandic", "polisen", Epsilon::ZERO, 0);
        assert_eq!(e.cell_sizes, [100, 500, 1000]);
        assert_eq!(e.warnings.len(), 2, "{:?}", e.warnings);
        assert!(e.warnings[0].contains("250 m"), "{}", e.warnings[0]);
        assert!(e.warnings[1].contains("TLP:AMBER"), "{}", e.warnings[1]);
        assert!(e.to_text().contains("warning:"));
    }
}
