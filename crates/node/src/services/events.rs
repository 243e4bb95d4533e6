//! `lagesbild.v1.EventService`: peers subscribe to their feeds, the org's own
//! people watch what arrived, and recall what was entered in error.

use crate::auth::authorised;
use crate::events::publish::still_allowed;
use crate::events::{unavailable, EventMaker};
use crate::policy_watch::PolicyHandle;
use crate::rate::RateLimits;
use futures::Stream;
use lagesbild_proto::v1::event_service_server::EventService;
use lagesbild_proto::v1::{
    FeedItem, RecallReason, RecallRequest, RecallResponse, SubscribeRequest, WatchItem,
    WatchRequest,
};
use lagesbild_store::{FeedRecord, RecallOutcome, Store, StoreError};
use lagesbild_vocabulary::Scope;
use lagesbild_vocabulary::{Clock, OrgId, SystemClock};
use prost::Message;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// Items read from the store at a time for one stream: what one stream holds
/// in memory at most, however slowly its reader reads.
const PAGE: usize = 256;

/// The event service of one node.
#[derive(Debug, Clone)]
pub struct EventApi {
    org: OrgId,
    store: Store,
    policy: Arc<PolicyHandle>,
    rate: Arc<RateLimits>,
    /// Purposes a recall may claim.
    write_purposes: Arc<[String]>,
    maker: Arc<EventMaker>,
    closing: watch::Receiver<bool>,
}

fn now() -> i64 {
    SystemClock.unix_seconds()
}

impl EventApi {
    /// The service of `org`'s node; its streams end when `closing` turns true
    /// (the node is shutting down and waits for calls in flight). Opening a
    /// subscription takes from the peer's `rate`.
    pub fn new(
        org: OrgId,
        store: Store,
        policy: Arc<PolicyHandle>,
        rate: Arc<RateLimits>,
        write_purposes: Arc<[String]>,
        maker: Arc<EventMaker>,
        closing: watch::Receiver<bool>,
    ) -> Self {
        Self {
            org,
            store,
            policy,
            rate,
            write_purposes,
            maker,
            closing,
        }
    }
}

/// A stream of the items of a feed or the inbox after a cursor, then live,
/// until `until` or until `closing` turns true: read a page at a time as the reader takes them, so a slow
/// reader holds back the stream, never fills memory.
fn tail<T, R, F, M>(
    read: R,
    head: watch::Receiver<u64>,
    after: u64,
    until: tokio::time::Instant,
    closing: watch::Receiver<bool>,
    map: M,
) -> impl Stream<Item = Result<T, Status>> + Send
where
    T: Send + 'static,
    R: Fn(u64) -> F + Send + 'static,
    F: std::future::Future<Output = Result<Vec<FeedRecord>, StoreError>> + Send,
    M: FnMut(FeedRecord) -> Option<T> + Send + 'static,
{
    struct State<R, M> {
        read: R,
        map: M,
        head: watch::Receiver<u64>,
        closing: watch::Receiver<bool>,
        after: u64,
        page: VecDeque<FeedRecord>,
        done: bool,
    }
    let state = State {
        read,
        map,
        head,
        closing,
        after,
        page: VecDeque::new(),
        done: false,
    };
    futures::stream::unfold(state, move |mut state| async move {
        if state.done || *state.closing.borrow() {
            return None;
        }
        loop {
            if let Some(record) = state.page.pop_front() {
                state.after = record.seq;
                if let Some(item) = (state.map)(record) {
                    return Some((Ok(item), state));
                }
                continue;
            }
            // Seen before reading, so an item stored after the read wakes us.
            state.head.borrow_and_update();
            match (state.read)(state.after).await {
                Ok(records) if !records.is_empty() => {
                    state.page.extend(records);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    state.done = true;
                    return Some((Err(unavailable(e)), state));
                }
            }
            tokio::select! {
                changed = state.head.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = tokio::time::sleep_until(until) => return None,
                _ = state.closing.changed() => return None,
            }
        }
    })
}

/// When a stream under a token that expires at `expires_at` must end.
fn stream_deadline(expires_at: u64) -> tokio::time::Instant {
    let left = expires_at.saturating_sub(now().max(0) as u64);
    tokio::time::Instant::now() + Duration::from_secs(left)
}

/// A person's stream ends at least this often; their tool opens it again, and
/// a disabled account or a role taken away is refused then.
const PERSON_STREAM_RECHECK: Duration = Duration::from_secs(60);

/// When the stream of `claims` must end: when its token or session does, and
/// for a person within [`PERSON_STREAM_RECHECK`].
fn deadline_of(claims: &lagesbild_auth::Authorised) -> tokio::time::Instant {
    let until = stream_deadline(claims.expires_at);
    if claims.person.is_some() {
        until.min(tokio::time::Instant::now() + PERSON_STREAM_RECHECK)
    } else {
        until
    }
}

type ItemStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl EventService for EventApi {
    type SubscribeStream = ItemStream<FeedItem>;
    type WatchStream = ItemStream<WatchItem>;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let (peer, purpose) = super::who_and_why(&request)?;
        let claims = authorised(&request)?;
        let policy = self.policy.current();
        let rules = policy
            .authorise(&self.org, &peer, Scope::EventsRead, &purpose)
            .map_err(|denied| Status::permission_denied(denied.to_string()))?;
        self.rate
            .take(&peer, rules.rate_limit)
            .map_err(|limited| Status::resource_exhausted(limited.to_string()))?;
        let after = request.get_ref().after;
        let head = self.store.feed_head(&peer);
        let last = *head.borrow();
        if after > last {
            return Err(Status::invalid_argument(format!(
                "after: {after} is past the last item of {peer}'s feed on {} ({last}); resume from a seq you received",
                self.org
            )));
        }
        let until = deadline_of(claims);
        let store = self.store.clone();
        let recipient = peer.clone();
        let handle = self.policy.clone();
        let stream = tail(
            move |after| {
                let store = store.clone();
                let recipient = recipient.clone();
                async move { store.feed(&recipient, after, PAGE).await }
            },
            head,
            after,
            until,
            self.closing.clone(),
            move |record| {
                let mut item = FeedItem::decode(&record.record[..]).ok()?;
                // The policy may have changed since the item was made.
                let policy = handle.snapshot();
                let rules = policy.peer(&peer)?;
                if !rules.scopes.contains(&Scope::EventsRead)
                    || !still_allowed(&mut item, rules, now())
                {
                    return None;
                }
                item.seq = record.seq;
                Some(item)
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn watch(
        &self,
        request: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let claims = authorised(&request)?;
        let after = request.get_ref().after;
        let until = deadline_of(claims);
        let store = self.store.clone();
        let stream = tail(
            move |after| {
                let store = store.clone();
                async move { store.inbox(after, PAGE).await }
            },
            self.store.inbox_head(),
            after,
            until,
            self.closing.clone(),
            |record| {
                let mut item = WatchItem::decode(&record.record[..]).ok()?;
                item.seq = record.seq;
                Some(item)
            },
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn recall(
        &self,
        request: Request<RecallRequest>,
    ) -> Result<Response<RecallResponse>, Status> {
        super::check_write_purpose(&request, &self.write_purposes)?;
        let request = request.into_inner();
        let reason = RecallReason::try_from(request.reason)
            .ok()
            .filter(|r| *r != RecallReason::Unspecified)
            .ok_or_else(|| {
                Status::invalid_argument("reason: entered-in-error or duplicate is needed")
            })?;
        if request.report_id.is_empty() {
            return Err(Status::invalid_argument("report_id: empty"));
        }
        let maker = self.maker.clone();
        let report_id = request.report_id.clone();
        let at = now();
        let outcome = self
            .store
            .recall(&request.report_id, move |recipient| {
                maker.recall_item(recipient, &report_id, reason, at)
            })
            .await
            .map_err(unavailable)?;
        match outcome {
            RecallOutcome::NoEvents => Err(Status::not_found(format!(
                "report {:?} made no events on {} (unknown, or no recipient was allowed one)",
                request.report_id, self.org
            ))),
            RecallOutcome::AlreadyRecalled => Ok(Response::new(RecallResponse {
                recipients: 0,
                already_recalled: true,
            })),
            RecallOutcome::Recalled { recipients } => Ok(Response::new(RecallResponse {
                recipients,
                already_recalled: false,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_stream_reads_a_page_only_when_its_reader_wants_more_and_ends_on_closing() {
        let reads = Arc::new(AtomicUsize::new(0));
        let counted = reads.clone();
        let stored = 10_000u64;
        let read = move |after: u64| {
            counted.fetch_add(1, Ordering::SeqCst);
            let page = (after + 1..=(after + PAGE as u64).min(stored))
                .map(|seq| FeedRecord {
                    seq,
                    expires_at: 0,
                    record: Vec::new(),
                })
                .collect();
            std::future::ready(Ok(page))
        };
        let (_head_sender, head) = watch::channel(stored);
        let (closing_sender, closing) = watch::channel(false);
        let until = tokio::time::Instant::now() + Duration::from_secs(600);
        let mut stream = Box::pin(tail(read, head, 0, until, closing, |r| Some(r.seq)));
        let first: Vec<u64> = (&mut stream).take(PAGE).map(Result::unwrap).collect().await;
        assert_eq!(first, (1..=PAGE as u64).collect::<Vec<_>>());
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "one page for one page taken"
        );
        assert_eq!(stream.next().await.unwrap().unwrap(), PAGE as u64 + 1);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // However long the reader waits, nothing more is read ahead.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        closing_sender.send_replace(true);
        let rest = stream.count().await;
        assert!(rest < PAGE, "{rest} items after closing");
    }

    #[tokio::test]
    async fn a_caught_up_stream_wakes_on_a_new_head_and_skips_what_the_map_drops() {
        let items = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
        let source = items.clone();
        let read = move |after: u64| {
            std::future::ready(Ok(source
                .lock()
                .unwrap()
                .iter()
                .filter(|&&seq| seq > after)
                .map(|&seq| FeedRecord {
                    seq,
                    expires_at: 0,
                    record: Vec::new(),
                })
                .collect()))
        };
        let (head_sender, head) = watch::channel(0);
        let (_closing_sender, closing) = watch::channel(false);
        let until = tokio::time::Instant::now() + Duration::from_secs(600);
        let mut stream = Box::pin(tail(read, head, 0, until, closing, |r| {
            (r.seq % 2 == 1).then_some(r.seq)
        }));
        let waiting = tokio::time::timeout(Duration::from_millis(50), stream.next()).await;
        assert!(waiting.is_err(), "nothing stored yet");
        items.lock().unwrap().extend([1, 2, 3]);
        head_sender.send_replace(3);
        assert_eq!(stream.next().await.unwrap().unwrap(), 1);
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            3,
            "2 is dropped by the map"
        );
    }
}
