//! Following every member's feed for this node, the node's own included, into
//! the inbox that `Watch` serves.
//!
//! One task per member. It asks for what came after the last item the inbox
//! took from that member (the cursor is stored with the items, in one batch),
//! so after a disconnect or a restart each item is taken exactly once, in
//! order. Alerts are raised as an item arrives, under the rules in force then,
//! and kept with it.

use super::alerts::{Alerts, EventFacts};
use crate::access::now_micros;
use crate::peer_client::{NotAsked, PeerClient};
use crate::peers::PeerGrant;
use futures::{FutureExt, StreamExt};
use lagesbild_geo::{Cell, CellSize};
use lagesbild_proto::v1::event_service_client::EventServiceClient;
use lagesbild_proto::v1::{feed_item, watch_item, Alert, FeedItem, SubscribeRequest, WatchItem};
use lagesbild_reports::places;
use lagesbild_store::{FeedRecord, Incoming, Store};
use prost::Message;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tonic::Code;

/// Items taken into the inbox in one batch at most.
const BATCH: usize = 512;
/// How long a subscription token lives; the peer ends the stream then and the
/// follower subscribes again with a fresh one.
const TOKEN_TTL: Duration = Duration::from_secs(600);
/// Waits between attempts while a peer can't be reached.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MOST: Duration = Duration::from_secs(2);
/// Waits after a refusal (policy, token), doubling: a refusal lasts until an
/// operator changes a file, which may be soon (a new agreement) or never.
const REFUSED_FIRST: Duration = Duration::from_secs(1);
const REFUSED_MOST: Duration = Duration::from_secs(60);

/// Takes items of members' feeds into the inbox.
#[derive(Debug)]
pub struct Follower {
    org: String,
    store: Store,
    alerts: Alerts,
    peers: PeerClient,
    purpose: String,
}

impl Follower {
    /// Follows for `org`'s node.
    pub fn new(
        org: String,
        store: Store,
        alerts: Alerts,
        peers: PeerClient,
        purpose: String,
    ) -> Self {
        Self {
            org,
            store,
            alerts,
            peers,
            purpose,
        }
    }

    /// Starts one task per member in `members`; they run until aborted.
    pub fn start(self: Arc<Self>, members: &[String]) -> Vec<JoinHandle<()>> {
        members
            .iter()
            .map(|member| {
                let this = self.clone();
                let member = member.clone();
                tokio::spawn(async move {
                    if member == this.org {
                        this.follow_own().await;
                    } else {
                        this.follow_peer(&member).await;
                    }
                })
            })
            .collect()
    }

    /// The node's own feed for its own org, read from the store.
    async fn follow_own(&self) {
        let org = self.org.clone();
        let mut head = self.store.feed_head(&org);
        loop {
            head.borrow_and_update();
            let taken = match self.store.received_cursor(&org).await {
                Ok(cursor) => self.store.feed(&org, cursor, BATCH).await,
                Err(e) => Err(e),
            };
            match taken {
                Ok(records) if !records.is_empty() => {
                    let items = records
                        .into_iter()
                        .filter_map(|record: FeedRecord| {
                            let item = FeedItem::decode(&record.record[..]).ok()?;
                            Some((record.seq, item))
                        })
                        .collect();
                    if let Err(e) = self.take(&org, items).await {
                        tracing::error!(error = %e, "own events not taken into the inbox");
                        tokio::time::sleep(RETRY_MOST).await;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "own event feed unreadable");
                    tokio::time::sleep(RETRY_MOST).await;
                    continue;
                }
            }
            if head.changed().await.is_err() {
                return;
            }
        }
    }

    /// `origin`'s feed for this node, over its channel, resubscribing after
    /// every end.
    async fn follow_peer(&self, origin: &str) {
        let mut retry = RETRY_FIRST;
        let mut refused_wait = REFUSED_FIRST;
        let mut last_refusal = String::new();
        loop {
            match self.subscribe_once(origin).await {
                Ok(()) => {
                    retry = RETRY_FIRST;
                    refused_wait = REFUSED_FIRST;
                }
                Err(status) => {
                    let refused = matches!(
                        status.code(),
                        Code::PermissionDenied
                            | Code::Unauthenticated
                            | Code::InvalidArgument
                            | Code::FailedPrecondition
                    );
                    let wait = if refused {
                        if status.message() != last_refusal {
                            tracing::info!(peer = %origin, reason = %status.message(), "peer's events refused to this node");
                            last_refusal = status.message().to_owned();
                        }
                        let wait = refused_wait;
                        refused_wait = (refused_wait * 2).min(REFUSED_MOST);
                        wait
                    } else {
                        tracing::debug!(peer = %origin, error = %status.message(), "peer's events unavailable; retrying");
                        retry = (retry * 2).min(RETRY_MOST);
                        retry
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One subscription to `origin`, until it ends.
    async fn subscribe_once(&self, origin: &str) -> Result<(), tonic::Status> {
        let after = self
            .store
            .received_cursor(origin)
            .await
            .map_err(super::unavailable)?;
        let grant = PeerGrant::call(Some(lagesbild_vocabulary::Scope::EventsRead), &self.purpose)
            .lasting(TOKEN_TTL);
        let (channel, request) = self
            .peers
            .prepare(origin, grant, SubscribeRequest { after })
            .map_err(|e| match e {
                NotAsked::WitnessAlarm(reason) => tonic::Status::failed_precondition(format!(
                    "not subscribing: its access log failed witnessing ({reason})"
                )),
                NotAsked::NoChannel => tonic::Status::unavailable("no channel"),
                NotAsked::Unsigned(e) => crate::status::unsigned(&e),
            })?;
        let mut stream = EventServiceClient::new(channel)
            .subscribe(request)
            .await?
            .into_inner();
        tracing::info!(peer = %origin, after, "following the peer's events");
        while let Some(first) = stream.next().await {
            let mut items = vec![first?];
            // Whatever else has arrived goes into the same batch.
            while items.len() < BATCH {
                match stream.next().now_or_never() {
                    Some(Some(item)) => items.push(item?),
                    _ => break,
                }
            }
            let items = items.into_iter().map(|i| (i.seq, i)).collect();
            self.take(origin, items).await.map_err(super::unavailable)?;
        }
        Ok(())
    }

    /// Takes `items` of `origin`'s feed into the inbox, with their alerts.
    async fn take(
        &self,
        origin: &str,
        items: Vec<(u64, FeedItem)>,
    ) -> Result<Vec<u64>, lagesbild_store::StoreError> {
        let received_at = now_micros();
        let incoming = items
            .into_iter()
            .map(|(seq, item)| {
                let watch = self.watch_item(origin, item, received_at);
                let expires_at = match &watch.item {
                    Some(watch_item::Item::Event(e)) => e.expires_at.map_or(0, |t| t.seconds),
                    _ => received_at / 1_000_000 + 86_400,
                };
                Incoming {
                    origin_seq: seq,
                    expires_at,
                    record: watch.encode_to_vec(),
                }
            })
            .collect();
        self.store.receive(origin, incoming).await
    }

    /// What `Watch` shows of an item: the item, when it came, the alerts it
    /// raised and the nearest named place. An item claiming another origin
    /// than the feed it came from is shown as the feed's.
    fn watch_item(&self, origin: &str, item: FeedItem, received_at: i64) -> WatchItem {
        let received_at = Some(prost_types::Timestamp {
            seconds: received_at.div_euclid(1_000_000),
            nanos: (received_at.rem_euclid(1_000_000) * 1000) as i32,
        });
        match item.item {
            Some(feed_item::Item::Event(mut event)) => {
                event.org = origin.to_owned();
                let cell = event.cell.and_then(|c| {
                    Some(Cell {
                        size: CellSize::from_metres(c.size_m)?,
                        easting: c.easting,
                        northing: c.northing,
                    })
                });
                let (alerts, near) = match cell {
                    Some(cell) => {
                        let facts = EventFacts {
                            category: u8::try_from(event.category).unwrap_or(0),
                            severity: event.severity,
                            cell,
                            slot_start: event.slot_start.map_or(0, |t| t.seconds),
                        };
                        let (lat, lon) = cell.centre_wgs84();
                        let near = places::nearest(lat, lon)
                            .filter(|(_, metres)| *metres <= 1000.0)
                            .map(|(place, _)| place.name.clone())
                            .unwrap_or_default();
                        (self.alerts.raised_by(&facts), near)
                    }
                    None => (Vec::new(), String::new()),
                };
                WatchItem {
                    seq: 0,
                    received_at,
                    item: Some(watch_item::Item::Event(event)),
                    alerts: alerts
                        .into_iter()
                        .map(|a| Alert {
                            rule: a.rule,
                            playbook: a.playbook,
                            actions: a.actions,
                        })
                        .collect(),
                    near,
                }
            }
            Some(feed_item::Item::Recall(mut recall)) => {
                recall.org = origin.to_owned();
                WatchItem {
                    seq: 0,
                    received_at,
                    item: Some(watch_item::Item::Recall(recall)),
                    alerts: Vec::new(),
                    near: String::new(),
                }
            }
            None => WatchItem {
                seq: 0,
                received_at,
                item: None,
                alerts: Vec::new(),
                near: String::new(),
            },
        }
    }
}
