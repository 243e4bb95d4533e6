//! Making events at ingest, and recalling them.

use crate::policy_watch::PolicyHandle;
use lagesbild_geo::{project, Cell};
use lagesbild_policy::PeerPolicy;
use lagesbild_privacy::event::{
    release_event, slot_of, EventRules, EventSource, ReleasedEvent, SLOT_SECONDS,
};
use lagesbild_privacy::pseudonym::Pseudonyms;
use lagesbild_privacy::scrub::Known;
use lagesbild_proto::v1::{
    feed_item, EventRecall, FeedItem, GridCell, RecallReason, Report, SituationEvent,
};
use lagesbild_store::{NewReport, Outgoing};
use lagesbild_vocabulary::Scope;
use prost::Message;
use prost_types::Timestamp;
use std::sync::Arc;

/// Makes each report's events for the recipients the policy in force allows.
#[derive(Debug)]
pub struct EventMaker {
    org: String,
    members: Vec<String>,
    policy: Arc<PolicyHandle>,
    pseudonyms: Pseudonyms,
    lifetime_secs: i64,
}

/// The rules of a recipient's policy for its events.
pub fn event_rules(policy: &PeerPolicy) -> EventRules {
    EventRules {
        categories: policy.categories.clone(),
        finest_cell: policy.finest_cell,
        max_tlp: policy.max_tlp as i32 as u8,
        text: policy.text,
    }
}

impl EventMaker {
    /// Events of `org`'s reports for `members` (the node's own org among
    /// them), ids keyed by `secret`, current for `lifetime_secs` after their slot.
    pub fn new(
        org: String,
        members: Vec<String>,
        policy: Arc<PolicyHandle>,
        secret: &[u8],
        lifetime_secs: i64,
    ) -> Self {
        Self {
            org,
            members,
            policy,
            pseudonyms: Pseudonyms::new(secret),
            lifetime_secs,
        }
    }

    /// Adds to each of `ready` (validated from `reports`, in the same order)
    /// the events the policy in force lets each recipient receive.
    pub fn attach(&self, reports: &[Report], ready: &mut [NewReport], now: i64) {
        let policy = self.policy.current();
        let recipients: Vec<_> = self
            .members
            .iter()
            .filter_map(|member| {
                let peer = policy.peer(member)?;
                peer.scopes.contains(&Scope::EventsRead).then(|| {
                    (
                        member.as_str(),
                        event_rules(peer),
                        self.pseudonyms.for_peer(member),
                    )
                })
            })
            .collect();
        if recipients.is_empty() {
            return;
        }
        for (report, new) in reports.iter().zip(ready.iter_mut()) {
            let observed_at = report.observed_at.map_or(0, |t| t.seconds);
            // Most of a bulk load is history: no event, and no work for it.
            if slot_of(observed_at) + SLOT_SECONDS + self.lifetime_secs <= now {
                continue;
            }
            let Some(position) = report.position.map(|p| project(p.lat, p.lon)) else {
                continue;
            };
            let source = EventSource {
                local_id: &report.id,
                observed_at,
                position,
                category: new.category,
                severity: new.severity,
                tlp: u8::try_from(report.tlp).unwrap_or(u8::MAX),
                text: &report.text,
                known: Known {
                    names: report.persons.iter().map(|p| p.name.as_str()).collect(),
                    plates: report.vehicle_plates.iter().map(String::as_str).collect(),
                },
            };
            for (recipient, rules, keys) in &recipients {
                if let Some(event) = release_event(&source, rules, keys, self.lifetime_secs, now) {
                    new.events.push(Outgoing {
                        recipient: (*recipient).to_owned(),
                        expires_at: event.expires_at,
                        record: FeedItem {
                            seq: 0,
                            item: Some(feed_item::Item::Event(event_message(&self.org, &event))),
                        }
                        .encode_to_vec(),
                    });
                }
            }
        }
    }

    /// The recall of report `report_id`'s event, as `recipient` knows it.
    pub fn recall_item(
        &self,
        recipient: &str,
        report_id: &str,
        reason: RecallReason,
        now: i64,
    ) -> Outgoing {
        Outgoing {
            recipient: recipient.to_owned(),
            expires_at: now + self.lifetime_secs,
            record: FeedItem {
                seq: 0,
                item: Some(feed_item::Item::Recall(EventRecall {
                    id: self.pseudonyms.for_peer(recipient).id(report_id),
                    org: self.org.clone(),
                    reason: reason as i32,
                })),
            }
            .encode_to_vec(),
        }
    }
}

fn timestamp(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

/// A released event on the wire.
pub fn event_message(org: &str, event: &ReleasedEvent) -> SituationEvent {
    SituationEvent {
        id: event.id.clone(),
        org: org.to_owned(),
        category: i32::from(event.category),
        severity: u32::from(event.severity),
        cell: Some(grid_cell(event.cell)),
        slot_start: timestamp(event.slot_start),
        slot_end: timestamp(event.slot_start + SLOT_SECONDS),
        expires_at: timestamp(event.expires_at),
        text: event.text.clone().unwrap_or_default(),
        tlp: i32::from(event.tlp),
    }
}

fn grid_cell(cell: Cell) -> GridCell {
    GridCell {
        size_m: cell.size.metres(),
        easting: cell.easting,
        northing: cell.northing,
    }
}

/// Whether a feed item made earlier may still go to a recipient under its
/// policy now: an event whose category, marking or cell the policy no longer
/// allows is held back, and its text dropped if text is no longer allowed.
/// Recalls always go (they only withdraw what was sent).
pub fn still_allowed(item: &mut FeedItem, policy: &PeerPolicy, now: i64) -> bool {
    let Some(feed_item::Item::Event(event)) = &mut item.item else {
        return true;
    };
    let rules = event_rules(policy);
    let cell_ok = event
        .cell
        .is_some_and(|c| c.size_m >= rules.finest_cell.metres());
    let current = event.expires_at.is_some_and(|t| t.seconds > now);
    let allowed = u8::try_from(event.category).is_ok_and(|c| rules.categories.contains(&c))
        && event.tlp > 0
        && u8::try_from(event.tlp).is_ok_and(|t| t <= rules.max_tlp)
        && cell_ok
        && current;
    if allowed && !rules.text {
        event.text.clear();
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;
    use lagesbild_policy::Policy;

    const NOW: i64 = 1_790_000_000;

    fn peer_policy(extra: &str) -> PeerPolicy {
        let text = format!(
            "version = 1\n[peer.p]\nscopes = [\"events:read\"]\npurposes = [\"x\"]\ncategories = [\"violence\"]\nfinest_cell = 250\nmax_tlp = \"amber\"\n{extra}"
        );
        Policy::parse(&text).unwrap().peer("p").unwrap().clone()
    }

    fn item(category: Category, tlp: Tlp, cell: u32, expires_at: i64) -> FeedItem {
        FeedItem {
            seq: 0,
            item: Some(feed_item::Item::Event(SituationEvent {
                id: "x".into(),
                org: "o".into(),
                category: category as i32,
                severity: 3,
                cell: Some(GridCell {
                    size_m: cell,
                    easting: 674_000,
                    northing: 6_580_000,
                }),
                slot_start: timestamp(NOW - 900),
                slot_end: timestamp(NOW),
                expires_at: timestamp(expires_at),
                text: "scrubbed".into(),
                tlp: tlp as i32,
            })),
        }
    }

    use lagesbild_proto::v1::{Category, Tlp};

    #[test]
    fn items_made_earlier_are_held_to_the_policy_in_force_when_sent() {
        let policy = peer_policy("text = true");
        let later = NOW + 3600;
        let mut ok = item(Category::Violence, Tlp::Amber, 250, later);
        assert!(still_allowed(&mut ok, &policy, NOW));
        for mut refused in [
            item(Category::Theft, Tlp::Green, 250, later),
            item(Category::Violence, Tlp::Red, 250, later),
            item(Category::Violence, Tlp::Unspecified, 250, later),
            item(Category::Violence, Tlp::Green, 100, later),
            item(Category::Violence, Tlp::Green, 250, NOW),
        ] {
            assert!(!still_allowed(&mut refused, &policy, NOW), "{refused:?}");
        }
        let mut no_text = item(Category::Violence, Tlp::Green, 1000, later);
        assert!(still_allowed(
            &mut no_text,
            &peer_policy("text = false"),
            NOW
        ));
        match no_text.item {
            Some(feed_item::Item::Event(e)) => assert!(e.text.is_empty()),
            other => panic!("{other:?}"),
        }
        let mut recall = FeedItem {
            seq: 0,
            item: Some(feed_item::Item::Recall(EventRecall::default())),
        };
        assert!(still_allowed(&mut recall, &policy, NOW));
    }
}
