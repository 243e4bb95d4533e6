//! `lagesbild.v1.PictureService`: one question to every member, one merged picture.
//!
//! The home node releases its own data to itself through the same gate as any
//! peer, and asks each peer concurrently with a delegation token; then it merges
//! only what was released. Nothing here sees a value the gates withheld.

use super::aggregate::{query_of, release_message, WireShape};
use crate::auth::authorised;
use crate::peer_client::{NotAsked, PeerClient};
use crate::peers::PeerGrant;
use crate::release::ReleaseGate;
use crate::status::IntoStatus;
use futures::future::join_all;
use lagesbild_auth::Actor;
use lagesbild_geo::{Cell, CellSize};
use lagesbild_identity::Federation;
use lagesbild_proto::columns::{columns_of, picture_rows};
use lagesbild_proto::v1::aggregate_service_client::AggregateServiceClient;
use lagesbild_proto::v1::picture_service_server::PictureService;
use lagesbild_proto::v1::{
    AggregateRelease, AnswerStatus, BucketKind, GridCell, PeerAnswer, PictureColumns,
    PictureRequest, RankedPlace, ReleaseColumns, ReleaseManyRequest, ReleaseRequest,
    SituationPicture,
};
use lagesbild_vocabulary::Purpose;
use lagesbild_vocabulary::Scope;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Code, Request, Response, Status};

/// How long a peer gets unless the request says otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(2);
/// Places ranked unless the request says otherwise.
const DEFAULT_TOP: usize = 10;

/// The picture service of one node.
#[derive(Debug, Clone)]
pub struct PictureApi {
    org: String,
    federation: Arc<Federation>,
    peers: PeerClient,
    gate: Arc<ReleaseGate>,
    held: Arc<HeldReleases>,
}

/// Most values the releases held from peers may hold in all (about 30 bytes
/// each in columns).
const HELD_VALUES: usize = 500_000;

/// The last release each peer gave this node for each request, with its
/// digest (releases without noise only). Asked the same again, a peer whose
/// release would be that one says so instead of sending its values again.
#[derive(Debug, Default)]
struct HeldReleases {
    entries: std::sync::Mutex<HeldEntries>,
}

/// A peer and one of its requests, as [`HeldReleases::key`] writes them.
type AskKey = (String, Vec<u8>);
/// A release held from a peer, and its digest.
type Held = (Vec<u8>, Arc<AggregateRelease>);

#[derive(Debug, Default)]
struct HeldEntries {
    by_ask: std::collections::HashMap<AskKey, Held>,
    values: usize,
}

impl HeldReleases {
    /// What identifies a request of `org` across pictures: the request with
    /// its window widened to whole hours, as every node widens it.
    fn key(org: &str, request: &ReleaseRequest) -> AskKey {
        use prost::Message;
        let hour = |t: &Option<prost_types::Timestamp>, up: bool| {
            t.map(|t| {
                let whole = t.seconds.div_euclid(3600) * 3600;
                let rest = t.seconds.rem_euclid(3600) != 0 || t.nanos > 0;
                prost_types::Timestamp {
                    seconds: whole + if up && rest { 3600 } else { 0 },
                    nanos: 0,
                }
            })
        };
        let normal = ReleaseRequest {
            from: hour(&request.from, false),
            to: hour(&request.to, true),
            unless_digest: Vec::new(),
            ..request.clone()
        };
        (org.to_owned(), normal.encode_to_vec())
    }

    fn get(&self, key: &AskKey) -> Option<Held> {
        self.lock().by_ask.get(key).cloned()
    }

    fn put(&self, key: AskKey, release: &AggregateRelease) {
        let size = values_of(release).bucket.len();
        if release.digest.is_empty() || size > HELD_VALUES {
            return;
        }
        let mut entries = self.lock();
        if entries.values + size > HELD_VALUES {
            entries.by_ask.clear();
            entries.values = 0;
        }
        entries.values += size;
        let held = (release.digest.clone(), Arc::new(release.clone()));
        if let Some((_, replaced)) = entries.by_ask.insert(key, held) {
            entries.values -= values_of(&replaced).bucket.len();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HeldEntries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PictureApi {
    /// The service of `org`'s node.
    pub fn new(
        org: String,
        federation: Arc<Federation>,
        peers: PeerClient,
        gate: Arc<ReleaseGate>,
    ) -> Self {
        Self {
            org,
            federation,
            peers,
            gate,
            held: Arc::default(),
        }
    }

    /// Every member's answers to each of `queries`: the home org's own through
    /// its gate, each peer's in one call over its channel.
    async fn ask_all(
        &self,
        queries: &[ReleaseRequest],
        analyst: &Actor,
        purpose: &str,
        deadline: Duration,
    ) -> Vec<(String, Vec<Answer>, Duration)> {
        let members: Vec<&str> = self.federation.nodes().map(|m| m.id.as_str()).collect();
        let asks = members.into_iter().map(|org| async move {
            let started = Instant::now();
            let answers = if org == self.org {
                join_all(queries.iter().map(|q| self.ask_self(q, purpose))).await
            } else {
                match self
                    .ask_peer(org, queries, analyst, purpose, deadline)
                    .await
                {
                    Ok(answers) => answers,
                    Err(failed) => vec![Err(failed); queries.len()],
                }
            };
            (org.to_owned(), answers, started.elapsed())
        });
        join_all(asks).await
    }

    async fn ask_self(&self, filters: &ReleaseRequest, purpose: &str) -> Answer {
        let query = query_of(filters).map_err(|s| (AnswerStatus::Error, s.message().to_owned()))?;
        let purpose = Purpose::parse(purpose).map_err(|e| (AnswerStatus::Error, e.to_string()))?;
        match self.gate.aggregate(self.gate.org(), &purpose, query).await {
            Ok(released) => Ok(release_message(
                &self.org,
                &released,
                WireShape::of(filters),
            )),
            Err(e) => Err(classify(&e.into_status())),
        }
    }

    /// One `ReleaseMany` call to `org` with every query; the whole call's
    /// failure, or an answer per query.
    async fn ask_peer(
        &self,
        org: &str,
        queries: &[ReleaseRequest],
        analyst: &Actor,
        purpose: &str,
        deadline: Duration,
    ) -> Result<Vec<Answer>, (AnswerStatus, String)> {
        // Each request names the release held from this peer for it, if any.
        let keys: Vec<AskKey> = queries.iter().map(|q| HeldReleases::key(org, q)).collect();
        let held: Vec<Option<Held>> = keys.iter().map(|k| self.held.get(k)).collect();
        let many = ReleaseManyRequest {
            requests: queries
                .iter()
                .zip(&held)
                .map(|(q, held)| ReleaseRequest {
                    unless_digest: held.as_ref().map(|(d, _)| d.clone()).unwrap_or_default(),
                    ..q.clone()
                })
                .collect(),
        };
        let grant = PeerGrant::call(Some(Scope::AggregateRead), purpose).acting_for(analyst);
        let (channel, mut request) = self.peers.prepare(org, grant, many).map_err(|e| {
            let status = match e {
                NotAsked::WitnessAlarm(_) => AnswerStatus::WitnessAlarm,
                NotAsked::NoChannel => AnswerStatus::Unavailable,
                NotAsked::Unsigned(_) => AnswerStatus::Error,
            };
            (status, e.to_string())
        })?;
        request.set_timeout(deadline);
        let mut client = AggregateServiceClient::new(channel);
        let answer = tokio::time::timeout(deadline, client.release_many(request)).await;
        let answered = match &answer {
            Ok(Ok(_)) => true,
            Ok(Err(status)) => status.code() != Code::Unavailable,
            Err(_) => false,
        };
        if answered {
            // It answered: check its log grew consistently since last time.
            self.peers.answered(org);
        }
        let outcomes = match answer {
            Ok(Ok(response)) => response.into_inner().outcomes,
            Ok(Err(status)) => return Err(classify(&status)),
            Err(_) => {
                return Err((
                    AnswerStatus::Timeout,
                    format!("no answer within {} ms", deadline.as_millis()),
                ))
            }
        };
        if outcomes.len() != queries.len() {
            return Err((
                AnswerStatus::Error,
                format!("{} outcomes for {} requests", outcomes.len(), queries.len()),
            ));
        }
        Ok(outcomes
            .into_iter()
            .zip(held.into_iter().zip(keys))
            .map(
                |(outcome, (held, key))| match (outcome.code, outcome.release) {
                    (0, Some(release)) if release.unchanged => match held {
                        Some((digest, kept)) if digest == release.digest => Ok((*kept).clone()),
                        _ => Err((
                            AnswerStatus::Error,
                            "the peer said its release was unchanged, but not from the one held"
                                .to_owned(),
                        )),
                    },
                    (0, Some(release)) => {
                        let release = in_columns(release)?;
                        self.held.put(key, &release);
                        Ok(release)
                    }
                    (0, None) => Err((AnswerStatus::Error, "released nothing".to_owned())),
                    (code, _) => Err(classify(&Status::new(
                        Code::from(code as i32),
                        outcome.message,
                    ))),
                },
            )
            .collect())
    }
}

/// One member's answer to one query.
type Answer = Result<AggregateRelease, (AnswerStatus, String)>;

fn classify(status: &Status) -> (AnswerStatus, String) {
    let kind = match status.code() {
        Code::PermissionDenied | Code::Unauthenticated => AnswerStatus::Denied,
        Code::ResourceExhausted => AnswerStatus::BudgetExhausted,
        Code::Unavailable => AnswerStatus::Unavailable,
        Code::DeadlineExceeded | Code::Cancelled => AnswerStatus::Timeout,
        _ => AnswerStatus::Error,
    };
    (kind, status.message().to_owned())
}

/// `release` with its values as columns, whichever form its node sent
/// (a node of an older build sends a message per value), or why it can't be used.
fn in_columns(mut release: AggregateRelease) -> Answer {
    if release.columns.is_none() {
        release.columns = Some(columns_of(&release.counts));
        release.counts = Vec::new();
    }
    let error = |reason: &str| Err((AnswerStatus::Error, reason.to_owned()));
    let Some(columns) = release.columns.as_ref() else {
        return error("the release has no values");
    };
    if columns.checked_len().is_none() {
        return error("the release's columns differ in length");
    }
    // What the merge's keys hold (see `key_of`): categories are small
    // numbers, cells lie in SWEREF 99 TM (eastings and northings under 2^24 m).
    if columns.category.iter().any(|c| !(0..=255).contains(c)) {
        return error("the release names a category that is no category");
    }
    if columns
        .easting
        .iter()
        .chain(&columns.northing)
        .any(|m| *m >= 1 << 24)
    {
        return error("the release names a cell outside SWEREF 99 TM");
    }
    Ok(release)
}

/// A release's values (empty if it has no columns: see [`in_columns`]).
fn values_of(release: &AggregateRelease) -> &ReleaseColumns {
    static EMPTY: ReleaseColumns = ReleaseColumns {
        bucket: Vec::new(),
        category: Vec::new(),
        easting: Vec::new(),
        northing: Vec::new(),
        count: Vec::new(),
        severity_sum: Vec::new(),
    };
    release.columns.as_ref().unwrap_or(&EMPTY)
}

/// A value's place in the order of a release's values, (bucket, category,
/// northing, easting) (cells row by row from the south, as the store keeps
/// them), as one number: the bucket's 64 bits (sign flipped, so that they
/// order as numbers), then 8 of the category and 24 of each coordinate, which
/// [`in_columns`] has checked they fit.
fn key_of(v: &ReleaseColumns, i: usize) -> u128 {
    let bucket = (v.bucket[i] as u64) ^ (1 << 63);
    u128::from(bucket) << 56
        | u128::from(v.category[i] as u8) << 48
        | u128::from(v.northing[i]) << 24
        | u128::from(v.easting[i])
}

/// Merges releases (in columns), each with the index of its answer in the
/// picture: sums per (bucket, category, cell) in key order and the answers
/// that contributed. (The answers covering a value's category that are not
/// among them withheld it.)
pub fn merge(releases: &[(u32, &AggregateRelease)]) -> PictureColumns {
    let columns: Vec<&ReleaseColumns> = releases.iter().map(|(_, r)| values_of(r)).collect();
    // Each release's keys in key order: as it came (a node of ours sends its
    // values sorted), or sorted here if it came otherwise.
    let keyed: Vec<Vec<(u128, u32)>> = columns
        .iter()
        .map(|v| {
            let n = v.checked_len().unwrap_or(0);
            let mut keys: Vec<(u128, u32)> = (0..n).map(|i| (key_of(v, i), i as u32)).collect();
            if !keys.windows(2).all(|w| w[0].0 <= w[1].0) {
                keys.sort_by_key(|(key, _)| *key);
            }
            keys
        })
        .collect();
    let most = keyed.iter().map(Vec::len).max().unwrap_or(0);
    let mut merged = PictureColumns {
        values: Some(ReleaseColumns::with_capacity(most)),
        contributor_count: Vec::with_capacity(most),
        contributors: Vec::with_capacity(most),
    };
    let out = merged.values.as_mut().expect("set above");
    // A k-way merge: the smallest key at the head of any release is the next
    // value; every release with that key at its head adds to it.
    let mut heads = vec![0usize; keyed.len()];
    loop {
        let next = keyed
            .iter()
            .zip(&heads)
            .filter_map(|(keys, &head)| keys.get(head).map(|(key, _)| *key))
            .min();
        let Some(key) = next else { break };
        let (mut count, mut severity_sum) = (0, 0);
        let mut first = None;
        let gave_from = merged.contributors.len();
        for (r, keys) in keyed.iter().enumerate() {
            let mut gave = false;
            // A key twice in one release (not from a node of ours) is summed,
            // and its org named once.
            while let Some(&(k, i)) = keys.get(heads[r]) {
                if k != key {
                    break;
                }
                let i = i as usize;
                count += columns[r].count[i];
                severity_sum += columns[r].severity_sum[i];
                first.get_or_insert((r, i));
                heads[r] += 1;
                gave = true;
            }
            if gave {
                merged.contributors.push(releases[r].0);
            }
        }
        let (r, i) = first.expect("the smallest key is some release's");
        let v = columns[r];
        out.bucket.push(v.bucket[i]);
        out.category.push(v.category[i]);
        out.northing.push(v.northing[i]);
        out.easting.push(v.easting[i]);
        out.count.push(count);
        out.severity_sum.push(severity_sum);
        merged
            .contributor_count
            .push((merged.contributors.len() - gave_from) as u32);
    }
    merged
}

/// Cells ranked by released severity, labelled with the nearest known place.
fn rank(values: &ReleaseColumns, size_m: u32, top: usize) -> Vec<RankedPlace> {
    let n = values.checked_len().unwrap_or(0);
    let mut by_cell: Vec<((u32, u32), (u64, u64))> = (0..n)
        .map(|i| {
            (
                (values.easting[i], values.northing[i]),
                (values.severity_sum[i], values.count[i]),
            )
        })
        .collect();
    by_cell.sort_unstable_by_key(|(cell, _)| *cell);
    by_cell.dedup_by(|(cell, (score, count)), (kept, total)| {
        let same = cell == kept;
        if same {
            total.0 += *score;
            total.1 += *count;
        }
        same
    });
    let mut ranked = by_cell;
    ranked.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    ranked
        .into_iter()
        .take(top)
        .map(|((easting, northing), (score, count))| {
            let cell = Cell {
                size: CellSize::from_metres(size_m).unwrap_or(CellSize::M250),
                easting,
                northing,
            };
            let (lat, lon) = cell.centre_wgs84();
            let (place_name, distance) = lagesbild_reports::places::nearest(lat, lon)
                .map_or((String::new(), 0), |(p, d)| {
                    (p.name.to_string(), d.round() as u32)
                });
            RankedPlace {
                cell: Some(GridCell {
                    size_m,
                    easting,
                    northing,
                }),
                place_name,
                place_distance_m: distance,
                score,
                count,
                centre_lat: lat,
                centre_lon: lon,
            }
        })
        .collect()
}

/// Released counts of profile releases (totals), summed by slot.
fn profile(releases: &[&AggregateRelease], slots: usize) -> Vec<u64> {
    let mut out = vec![0; slots];
    for release in releases {
        let values = values_of(release);
        for (slot, count) in values.bucket.iter().zip(&values.count) {
            if let Some(total) = usize::try_from(*slot).ok().and_then(|s| out.get_mut(s)) {
                *total += count;
            }
        }
    }
    out
}

/// The cell size the hour-of-day and hour-of-week profiles are asked at.
const PROFILE_CELL_M: u32 = 1000;

#[tonic::async_trait]
impl PictureService for PictureApi {
    async fn picture(
        &self,
        request: Request<PictureRequest>,
    ) -> Result<Response<SituationPicture>, Status> {
        let token = authorised(&request)?.clone();
        // Peers are told the verified person the picture is for; a caller
        // that is no person (a machine client, the node's operator) is named
        // as itself.
        let analyst = token
            .person
            .clone()
            .unwrap_or_else(|| Actor::named(&token.sub));
        let request = request.into_inner();
        let mut filters = request
            .filters
            .ok_or_else(|| Status::invalid_argument("filters: required"))?;
        filters.purpose = token.purpose.clone();
        // Every member is asked for columns, whatever the caller wants back.
        filters.columnar = true;
        query_of(&filters)?;
        let deadline = match request.deadline_ms {
            0 => DEFAULT_DEADLINE,
            ms => Duration::from_millis(u64::from(ms)).min(Duration::from_secs(30)),
        };
        let top = match request.top {
            0 => DEFAULT_TOP,
            n => (n as usize).min(1000),
        };
        let profiles_wanted = !matches!(
            BucketKind::try_from(filters.bucket),
            Ok(BucketKind::HourOfDay | BucketKind::HourOfWeek)
        );
        // The profiles are summed over cells and categories, so they are asked
        // at the coarsest cells (fewer values withheld below k), and as totals
        // (one value per slot on the wire).
        let by_day = ReleaseRequest {
            bucket: BucketKind::HourOfDay as i32,
            cell_size_m: PROFILE_CELL_M,
            totals_only: true,
            ..filters.clone()
        };
        let by_week = ReleaseRequest {
            bucket: BucketKind::HourOfWeek as i32,
            cell_size_m: PROFILE_CELL_M,
            totals_only: true,
            ..filters.clone()
        };
        let mut queries = vec![filters.clone()];
        if profiles_wanted {
            queries.extend([by_day, by_week]);
        }
        let asked = self
            .ask_all(&queries, &analyst, &token.purpose, deadline)
            .await;
        // One list per query, as (org, answer, time); answers are moved, not copied.
        let (mut main, mut day, mut week) = (Vec::new(), Vec::new(), Vec::new());
        for (org, answers, took) in asked {
            for (list, answer) in [&mut main, &mut day, &mut week].into_iter().zip(answers) {
                list.push((org.clone(), answer, took));
            }
        }
        fn ok(answers: &[(String, Answer, Duration)]) -> Vec<&AggregateRelease> {
            answers
                .iter()
                .filter_map(|(_, r, _)| r.as_ref().ok())
                .collect()
        }
        // Each release with the index its answer will have in the picture.
        let indexed: Vec<(u32, &AggregateRelease)> = main
            .iter()
            .enumerate()
            .filter_map(|(i, (_, r, _))| r.as_ref().ok().map(|r| (i as u32, r)))
            .collect();
        let merged = merge(&indexed);
        let values = merged.values.as_ref().expect("merge sets values");
        let answers: Vec<PeerAnswer> = main
            .iter()
            .map(|(org, result, took)| match result {
                Ok(r) => PeerAnswer {
                    org: org.clone(),
                    status: AnswerStatus::Ok as i32,
                    reason: String::new(),
                    k: r.k,
                    epsilon: r.epsilon,
                    categories: r.categories.clone(),
                    values: values_of(r).bucket.len() as u32,
                    latency_micros: took.as_micros() as u64,
                },
                Err((status, reason)) => PeerAnswer {
                    org: org.clone(),
                    status: *status as i32,
                    reason: reason.clone(),
                    latency_micros: took.as_micros() as u64,
                    ..PeerAnswer::default()
                },
            })
            .collect();
        let orgs: BTreeSet<&str> = indexed.iter().map(|(_, r)| r.org.as_str()).collect();
        tracing::info!(
            analyst = %token.sub,
            purpose = %token.purpose,
            answered = orgs.len(),
            values = values.bucket.len(),
            "situation picture made"
        );
        let first = indexed.first().map(|(_, r)| *r);
        // For the access log: what the analyst got, and the budget this node's
        // own releases to itself spent.
        let own_epsilon: f64 = [&main, &day, &week]
            .iter()
            .flat_map(|answers| answers.iter())
            .filter(|(org, _, _)| org == &self.org)
            .filter_map(|(_, r, _)| r.as_ref().ok().map(|r| r.epsilon))
            .sum();
        let mut cells: Vec<u64> = values
            .northing
            .iter()
            .zip(&values.easting)
            .map(|(&n, &e)| u64::from(n) << 32 | u64::from(e))
            .collect();
        cells.sort_unstable();
        cells.dedup();
        let summary = lagesbild_audit::Released {
            cells: cells.len() as u64,
            values: values.bucket.len() as u64,
            withheld: 0,
            epsilon_micros: (own_epsilon * 1e6).round() as u64,
        };
        let ranking = rank(values, filters.cell_size_m, top);
        let (cells, columns) = if request.columnar {
            (Vec::new(), Some(merged))
        } else {
            let is_profile = !profiles_wanted;
            (
                picture_rows(&merged, filters.cell_size_m, is_profile, &answers),
                None,
            )
        };
        let mut response = Response::new(SituationPicture {
            home_org: self.org.clone(),
            from: first.and_then(|r| r.from),
            to: first.and_then(|r| r.to),
            cell_size_m: filters.cell_size_m,
            bucket: filters.bucket,
            ranking,
            cells,
            answers,
            hour_of_day: profile(&ok(&day), 24),
            hour_of_week: profile(&ok(&week), 168),
            columns,
        });
        response.extensions_mut().insert(summary);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lagesbild_proto::v1::{Category, ReleasedCount};
    use prost_types::Timestamp;

    fn value(hour: i64, category: Category, easting: u32, count: u64) -> ReleasedCount {
        ReleasedCount {
            cell: Some(GridCell {
                size_m: 250,
                easting,
                northing: 7,
            }),
            bucket_start: Some(Timestamp {
                seconds: hour * 3600,
                nanos: 0,
            }),
            slot: 0,
            category: category as i32,
            count,
            severity_sum: 2 * count,
        }
    }

    /// A release as a node of an older build sends it (a message per value),
    /// in columns as the picture takes it.
    fn release(org: &str, categories: &[Category], counts: Vec<ReleasedCount>) -> AggregateRelease {
        in_columns(AggregateRelease {
            org: org.into(),
            categories: categories.iter().map(|&c| c as i32).collect(),
            counts,
            ..AggregateRelease::default()
        })
        .unwrap()
    }

    /// Hour, category, easting, count, severity sum, contributors, withheld by.
    type Row = (i64, i32, u32, u64, u64, Vec<u32>, Vec<u32>);

    #[test]
    fn a_release_the_merge_cannot_order_is_an_error_not_a_wrong_picture() {
        let good = value(1, Category::Violence, 3, 4);
        assert!(in_columns(release("a", &[Category::Violence], vec![good])).is_ok());
        let mut columns = columns_of(&[good]);
        columns.category[0] = 300;
        let bad = AggregateRelease {
            columns: Some(columns),
            ..AggregateRelease::default()
        };
        let (status, reason) = in_columns(bad).unwrap_err();
        assert_eq!(status, AnswerStatus::Error);
        assert!(reason.contains("category"), "{reason}");
        let mut far = good;
        far.cell.as_mut().unwrap().easting = 1 << 24;
        let (_, reason) = in_columns(AggregateRelease {
            counts: vec![far],
            ..AggregateRelease::default()
        })
        .unwrap_err();
        assert!(reason.contains("SWEREF"), "{reason}");
    }

    #[test]
    fn merge_sums_each_value_and_names_who_gave_and_who_withheld_it_in_any_order() {
        use Category::{Theft, Violence};
        let a = release(
            "a",
            &[Violence, Theft],
            vec![value(1, Violence, 3, 4), value(2, Violence, 3, 5)],
        );
        // Out of order, and one key twice: summed, its org named once.
        let b = release(
            "b",
            &[Violence],
            vec![
                value(2, Violence, 3, 6),
                value(1, Violence, 9, 3),
                value(2, Violence, 3, 1),
            ],
        );
        let c = release("c", &[Theft], vec![value(1, Theft, 3, 8)]);
        let merged = merge(&[(0, &a), (2, &b), (3, &c)]);
        assert_eq!(merged.checked_len(), Some(4));
        // Answer 1 did not answer: it covers nothing.
        let answers: Vec<PeerAnswer> = [&a.categories, &Vec::new(), &b.categories, &c.categories]
            .into_iter()
            .map(|categories| PeerAnswer {
                categories: categories.clone(),
                ..PeerAnswer::default()
            })
            .collect();
        let got: Vec<Row> = picture_rows(&merged, 250, false, &answers)
            .iter()
            .map(|m| {
                let v = m.value.unwrap();
                (
                    v.bucket_start.unwrap().seconds / 3600,
                    v.category,
                    v.cell.unwrap().easting,
                    v.count,
                    v.severity_sum,
                    m.contributors.clone(),
                    m.withheld_by.clone(),
                )
            })
            .collect();
        let (violence, theft) = (Violence as i32, Theft as i32);
        assert_eq!(
            got,
            vec![
                (1, violence, 3, 4, 8, vec![0], vec![2]),
                (1, violence, 9, 3, 6, vec![2], vec![0]),
                (1, theft, 3, 8, 16, vec![3], vec![0]),
                (2, violence, 3, 12, 24, vec![0, 2], vec![]),
            ]
        );
    }
}
