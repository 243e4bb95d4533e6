//! The one way out for aggregates: every release to a peer (and to the node's
//! own organisation) passes through [`ReleaseGate::aggregate`].
//!
//! In order: the policy in force authorises the caller for the scope and
//! purpose, the rate limit is applied, the privacy engine checks the query
//! against the peer's rules, the privacy budget is spent (durably, before any
//! data is read), and only then are the counters read and handed to the engine,
//! whose release is all that is returned. No other code reads counters for a
//! caller.

use crate::policy_watch::PolicyHandle;
use crate::rate::{RateLimited, RateLimits};
use lagesbild_policy::Denied;
use lagesbild_privacy::calendar::local_day;
use lagesbild_privacy::{
    plan, Atoms, BucketKind, Counter, Epsilon, Plan, Refusal, Release, ReleaseQuery, SecureRandom,
};
use lagesbild_store::{BudgetAccount, CounterFamily, Spend, Store};
use lagesbild_vocabulary::Scope;
use lagesbild_vocabulary::{OrgId, Purpose, SharedClock, SystemClock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Why no release was made.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The policy does not allow the call.
    #[error("{0}")]
    Denied(#[from] Denied),
    /// The query asks for more than the peer's rules allow.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The privacy budget would be overspent.
    #[error("privacy budget of {peer} for today is spent: {left} of {per_day} left, a query costs {per_query}; it refills at {refills_at}")]
    Budget {
        /// The peer.
        peer: OrgId,
        /// Left today.
        left: Epsilon,
        /// The daily budget.
        per_day: Epsilon,
        /// The cost of one query.
        per_query: Epsilon,
        /// Next local midnight, RFC 3339.
        refills_at: String,
    },
    /// Too many calls.
    #[error("{0}")]
    RateLimited(#[from] RateLimited),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] lagesbild_store::StoreError),
    /// The task making the release panicked or was cancelled.
    #[error("the release task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A release and what is left of the budget.
#[derive(Debug)]
pub struct GateRelease {
    /// The engine's release (shared: a release without noise may be given
    /// again while its counters are unchanged).
    pub release: Arc<Release>,
    /// Budget left today after this release (when it had noise).
    pub budget_left: Option<Epsilon>,
    /// For a release without noise, the SHA-256 of what it says
    /// ([`content_digest`]): a caller that holds a release with this digest
    /// holds this release.
    pub digest: Option<[u8; 32]>,
}

/// The SHA-256 of what a release says: its plan (window, cells, buckets,
/// categories, k) and its values. Only releases without noise have one: two
/// with the same digest are the same release, so a caller holding one needs
/// nothing more. It is made from the values sent, never from the counters,
/// so it changes only when a released value does.
pub fn content_digest(release: &Release) -> [u8; 32] {
    let plan = format!("{:?}", release.plan);
    let mut bytes = Vec::with_capacity(plan.len() + release.counts.len() * 29);
    bytes.extend_from_slice(plan.as_bytes());
    for v in &release.counts {
        bytes.extend_from_slice(&v.bucket.to_le_bytes());
        bytes.push(v.category);
        bytes.extend_from_slice(&v.cell.easting.to_le_bytes());
        bytes.extend_from_slice(&v.cell.northing.to_le_bytes());
        bytes.extend_from_slice(&v.count.to_le_bytes());
        bytes.extend_from_slice(&v.severity_sum.to_le_bytes());
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Enforces the policy on every aggregate release.
#[derive(Debug)]
pub struct ReleaseGate {
    org: OrgId,
    policy: Arc<PolicyHandle>,
    store: Store,
    rng: Arc<Mutex<SecureRandom>>,
    rate: Arc<RateLimits>,
    /// The local day whose old budget accounts were last pruned.
    pruned_day: AtomicU32,
    atoms: Arc<AtomCache>,
    releases: Arc<ReleaseCache>,
    clock: SharedClock,
}

/// The counters of `plan`'s window, for the privacy engine.
fn counters<'a>(
    store: &'a Store,
    family: CounterFamily,
    plan: &Plan,
) -> impl Iterator<Item = Counter> + 'a {
    store
        .counters(family, plan.from_hour, plan.to_hour)
        .map(|(key, value)| Counter {
            hour: key.hour,
            category: key.category,
            cell: key.cell,
            count: value.count,
            severity_sum: value.severity_sum,
        })
}

/// Most counters an hourly release reads on the calling task (well under a
/// millisecond of work); larger releases are made on the blocking pool.
const INLINE_COUNTERS: usize = 8192;

/// Most sums (atoms, about 40 bytes each) the cache holds in all: about 10 MB.
/// Past it the cache starts over, so callers asking many different shapes can
/// cost the node time, never unbounded memory.
const ATOM_CACHE_ATOMS: usize = 250_000;

/// The exact sums of whole periods (days, weeks, months) by plan shape, each
/// with the stamp of the counters it was computed from. They stay inside the
/// node: every release still thresholds (and noises) them afresh.
#[derive(Debug, Default)]
struct AtomCache {
    entries: Mutex<AtomEntries>,
    /// Periods served from an entry, for tests and diagnostics.
    hits: std::sync::atomic::AtomicU64,
}

/// The entries and how many atoms they hold together.
#[derive(Debug, Default)]
struct AtomEntries {
    by_key: HashMap<String, ((u64, usize), Arc<Atoms>)>,
    atoms: usize,
}

impl AtomCache {
    fn atoms(&self, store: &Store, family: CounterFamily, period: &Plan) -> Arc<Atoms> {
        let key = format!(
            "{family:?} {} {} base {} {} k {} {:?} {:?} {}..{}",
            period.cell_size.metres(),
            period.bucket,
            period.base_cell.metres(),
            period.base_bucket,
            period.k,
            period.categories,
            period.area,
            period.from_hour,
            period.to_hour
        );
        // The stamp is read before the counters: a change in between makes the
        // entry look older than it is, never newer.
        let stamp = store.counters_stamp(family, period.from_hour, period.to_hour);
        if let Some((held, atoms)) = self.lock().by_key.get(&key) {
            if *held == stamp {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return atoms.clone();
            }
        }
        let atoms = Arc::new(period.atoms(counters(store, family, period)));
        if atoms.len() > ATOM_CACHE_ATOMS {
            return atoms;
        }
        let mut entries = self.lock();
        if entries.atoms + atoms.len() > ATOM_CACHE_ATOMS {
            entries.by_key.clear();
            entries.atoms = 0;
        }
        entries.atoms += atoms.len();
        if let Some((_, replaced)) = entries.by_key.insert(key, (stamp, atoms.clone())) {
            entries.atoms -= replaced.len();
        }
        atoms
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AtomEntries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Most released values the release cache holds in all (about 40 bytes each).
const RELEASE_CACHE_VALUES: usize = 500_000;

/// Releases without noise are a function of their plan and their counters:
/// the last ones made are kept, by plan and the stamps of the counters under
/// it, and given again while none of those counters changed. Releases with
/// noise are never kept: each draws its noise afresh.
#[derive(Debug, Default)]
struct ReleaseCache {
    entries: Mutex<ReleaseEntries>,
}

/// The stamps of the counters under each piece of a plan.
type Stamps = Vec<(u64, usize)>;

/// A kept release and its content digest.
type Kept = (Arc<Release>, [u8; 32]);

#[derive(Debug, Default)]
struct ReleaseEntries {
    by_plan: HashMap<String, (Stamps, Kept)>,
    values: usize,
}

impl ReleaseCache {
    fn get(&self, key: &str, stamps: &[(u64, usize)]) -> Option<Kept> {
        let entries = self.lock();
        let (held, kept) = entries.by_plan.get(key)?;
        (held.as_slice() == stamps).then(|| kept.clone())
    }

    fn put(&self, key: String, stamps: Stamps, kept: Kept) {
        let size = kept.0.counts.len();
        if size > RELEASE_CACHE_VALUES {
            return;
        }
        let mut entries = self.lock();
        if entries.values + size > RELEASE_CACHE_VALUES {
            entries.by_plan.clear();
            entries.values = 0;
        }
        entries.values += size;
        if let Some((_, (replaced, _))) = entries.by_plan.insert(key, (stamps, kept)) {
            entries.values -= replaced.counts.len();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReleaseEntries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Budget spent by `peer` on the local day of the UTC `hour`, as recorded in `store`.
pub fn spent_on_day_of(store: &Store, peer: &str, hour: u32) -> Epsilon {
    Epsilon::from_micros(store.spent(&BudgetAccount::new(peer, local_day(hour))))
}

impl ReleaseGate {
    /// The gate of `org`'s node; each release takes one call from the
    /// peer's bucket in `rate` (shared with the other calls that count).
    pub fn new(org: OrgId, policy: Arc<PolicyHandle>, store: Store, rate: Arc<RateLimits>) -> Self {
        Self {
            org,
            policy,
            store,
            rng: Arc::new(Mutex::new(SecureRandom::default())),
            rate,
            pruned_day: AtomicU32::new(0),
            atoms: Arc::new(AtomCache::default()),
            releases: Arc::new(ReleaseCache::default()),
            clock: SystemClock::shared(),
        }
    }

    /// The same gate, reading the budget's day from `clock`.
    #[must_use]
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The UTC hour now, by the gate's clock.
    pub fn hour_now(&self) -> u32 {
        self.clock.utc_hour()
    }

    /// The org whose node this gate guards.
    pub fn org(&self) -> &OrgId {
        &self.org
    }

    /// The policy in force.
    pub fn policy(&self) -> &PolicyHandle {
        &self.policy
    }

    /// Budget spent by `peer` today.
    pub fn spent_today(&self, peer: &str) -> Epsilon {
        spent_on_day_of(&self.store, peer, self.hour_now())
    }

    /// The release for `peer` asking `query` for `purpose`, or why not.
    pub async fn aggregate(
        &self,
        peer: &OrgId,
        purpose: &Purpose,
        query: ReleaseQuery,
    ) -> Result<GateRelease, GateError> {
        let policy = self.policy.current();
        let rules = policy.authorise(&self.org, peer, Scope::AggregateRead, purpose)?;
        self.rate.take(peer, rules.rate_limit)?;
        let plan = plan(&rules.release_rules(), &query)?;

        let mut budget_left = None;
        if let (Some(per_query), Some(per_day)) = (plan.epsilon, rules.epsilon_per_day) {
            let hour = self.hour_now();
            let day = local_day(hour);
            let spend = self
                .store
                .spend(
                    &BudgetAccount::new(peer, day),
                    per_query.micros(),
                    per_day.micros(),
                )
                .await?;
            match spend {
                Spend::Spent { total } => {
                    budget_left = Some(per_day.saturating_sub(Epsilon::from_micros(total)));
                }
                Spend::Refused { spent } => {
                    return Err(GateError::Budget {
                        peer: peer.clone(),
                        left: per_day.saturating_sub(Epsilon::from_micros(spent)),
                        per_day,
                        per_query,
                        refills_at: lagesbild_policy::explain::next_local_midnight(hour),
                    })
                }
            }
            // Accounts older than yesterday are no longer needed; prune once a day,
            // not on every query.
            if self.pruned_day.swap(day, Ordering::Relaxed) != day {
                let store = self.store.clone();
                let yesterday = day.saturating_sub(1);
                tokio::spawn(async move {
                    if let Err(e) = store.forget_budgets_before(yesterday).await {
                        tracing::warn!(error = %e, "old budget accounts not removed");
                    }
                });
            }
        }

        let family = if plan.counter_cell_size() == lagesbild_geo::CellSize::M100 {
            CounterFamily::M100
        } else {
            CounterFamily::M250
        };
        // Counters are in memory, so a release is only CPU work. A small one is
        // made right here: handing it to another thread would cost more than
        // making it. A large one would hold up the other calls of this worker.
        let small = plan.bucket == BucketKind::Hour
            && self
                .store
                .counter_count(family, plan.from_hour, plan.to_hour)
                <= INLINE_COUNTERS;
        let store = self.store.clone();
        let rng = self.rng.clone();
        let atom_cache = self.atoms.clone();
        let release_cache = self.releases.clone();
        let make = move || -> (Arc<Release>, Option<[u8; 32]>) {
            if small {
                let release = plan.release(counters(&store, family, &plan), &mut &*rng);
                let digest = plan.epsilon.is_none().then(|| content_digest(&release));
                return (Arc::new(release), digest);
            }
            // A large window's sums are kept by piece (a day of hours, a
            // whole day, week or month) until its counters change: a month
            // asked again, or an hour later, reads only what changed.
            let pieces = plan.pieces();
            // Without noise the whole release is kept too. The stamps are read
            // before the counters, as for the sums.
            let exact = plan.epsilon.is_none().then(|| {
                let stamps: Stamps = pieces
                    .iter()
                    .map(|p| store.counters_stamp(family, p.from_hour, p.to_hour))
                    .collect();
                (format!("{family:?} {plan:?}"), stamps)
            });
            if let Some((key, stamps)) = &exact {
                if let Some((release, digest)) = release_cache.get(key, stamps) {
                    return (release, Some(digest));
                }
            }
            let mut atoms = Atoms::default();
            for piece in &pieces {
                atoms.extend(&atom_cache.atoms(&store, family, piece));
            }
            let release = Arc::new(plan.release_atoms(&atoms, &mut &*rng));
            match exact {
                Some((key, stamps)) => {
                    let digest = content_digest(&release);
                    release_cache.put(key, stamps, (release.clone(), digest));
                    (release, Some(digest))
                }
                None => (release, None),
            }
        };
        let (release, digest) = if small {
            make()
        } else {
            tokio::task::spawn_blocking(make).await?
        };
        Ok(GateRelease {
            release,
            budget_left,
            digest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lagesbild_geo::{Cell, CellSize};
    use lagesbild_privacy::{ReleaseRules, K};
    use lagesbild_store::{NewReport, StoreOptions};

    fn report(id: &str, hour: u32) -> NewReport {
        NewReport {
            id: id.into(),
            hour,
            category: 1,
            severity: 2,
            cell100: Cell::containing(59.332, 18.064, CellSize::M100).unwrap(),
            cell250: Cell::containing(59.332, 18.064, CellSize::M250).unwrap(),
            payload: Vec::new(),
            events: Vec::new(),
        }
    }

    #[tokio::test]
    async fn kept_sums_follow_new_reports_and_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let day = 480_000 / 24 * 24;
        store
            .insert((0..5).map(|i| report(&format!("a{i}"), day + 3)).collect())
            .await
            .unwrap();
        let rules = ReleaseRules {
            k: K::new(3).unwrap(),
            finest_cell: CellSize::M250,
            finest_bucket: BucketKind::Hour,
            categories: [1].into(),
            epsilon_per_query: None,
        };
        let query = ReleaseQuery {
            from_hour: day,
            to_hour: day + 24,
            categories: Default::default(),
            area: None,
            cell_size: CellSize::M250,
            bucket: BucketKind::Day,
        };
        let plan = plan(&rules, &query).unwrap();
        let cache = AtomCache::default();
        let total = |cache: &AtomCache| -> u64 {
            plan.periods()
                .iter()
                .map(|p| {
                    let atoms = cache.atoms(&store, CounterFamily::M250, p);
                    plan.release_atoms(&atoms, &mut SecureRandom::default())
                        .counts
                        .iter()
                        .map(|v| v.count)
                        .sum::<u64>()
                })
                .sum()
        };
        assert_eq!(total(&cache), 5);
        let periods = plan.periods().len() as u64;
        assert_eq!(cache.hits.load(Ordering::Relaxed), 0);
        assert_eq!(total(&cache), 5, "served from the cache");
        assert_eq!(
            cache.hits.load(Ordering::Relaxed),
            periods,
            "every period served from the cache"
        );
        // In the same hour and cell: its base atom grows from 5 to 6.
        store.insert(vec![report("b", day + 3)]).await.unwrap();
        assert_eq!(total(&cache), 6, "a new report in the period is counted");
        // The window is two local days; the new report changed one of them.
        assert_eq!(periods, 2);
        assert_eq!(
            cache.hits.load(Ordering::Relaxed),
            periods + 1,
            "the unchanged day served, the changed one made afresh"
        );
        let held = cache.lock().atoms;
        assert!(held > 0 && held <= ATOM_CACHE_ATOMS);
        assert_eq!(
            held,
            cache
                .lock()
                .by_key
                .values()
                .map(|(_, a)| a.len())
                .sum::<usize>()
        );
    }

    /// A gate over `store` whose policy gives scandic `extra` on top of
    /// hourly 250 m releases at k = 3.
    fn gate_with(dir: &std::path::Path, store: Store, extra: &str) -> ReleaseGate {
        let path = dir.join("policy.toml");
        let text = format!(
            "version = 1\n[peer.scandic]\nscopes = [\"aggregate:read\"]\npurposes = [\"p\"]\ncategories = [\"all\"]\n\
             finest_cell = 250\nfinest_bucket = \"hour\"\nk = 3\n{extra}"
        );
        std::fs::write(&path, &text).unwrap();
        let policy = lagesbild_policy::Policy::parse(&text).unwrap();
        ReleaseGate::new(
            OrgId::parse("polisen").unwrap(),
            Arc::new(PolicyHandle::new(path, policy)),
            store,
            Default::default(),
        )
    }

    #[tokio::test]
    async fn an_exact_release_is_given_again_until_its_counters_change_a_noisy_one_never() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), StoreOptions::default()).unwrap();
        let day = 480_000 / 24 * 24;
        // Three reports in each (hour, cell), over the inline limit of
        // counters, so that the release is made by pieces.
        let many: Vec<NewReport> = (0..3 * (INLINE_COUNTERS as u32 + 1))
            .map(|i| {
                let atom = i / 3;
                let mut r = report(&format!("a{i}"), day + (atom % 48));
                r.cell250.easting += (atom / 48) * 250;
                r
            })
            .collect();
        store.insert(many).await.unwrap();
        let (scandic, p) = (
            OrgId::parse("scandic").unwrap(),
            Purpose::parse("p").unwrap(),
        );
        let query = || ReleaseQuery {
            from_hour: day,
            to_hour: day + 48,
            categories: Default::default(),
            area: None,
            cell_size: CellSize::M250,
            bucket: BucketKind::Hour,
        };
        let gate = gate_with(dir.path(), store.clone(), "");
        let first = gate.aggregate(&scandic, &p, query()).await.unwrap().release;
        let again = gate.aggregate(&scandic, &p, query()).await.unwrap().release;
        assert!(Arc::ptr_eq(&first, &again), "the same release, kept");
        // A report under it: made afresh, and it counts the report.
        store.insert(vec![report("late", day + 1)]).await.unwrap();
        let after = gate.aggregate(&scandic, &p, query()).await.unwrap().release;
        assert!(!Arc::ptr_eq(&first, &after));
        let total = |r: &Release| r.counts.iter().map(|v| v.count).sum::<u64>();
        assert_eq!(total(&after), total(&first) + 1);
        // With noise, every release is new.
        let noisy = gate_with(
            dir.path(),
            store,
            "epsilon_per_query = 0.1\nepsilon_per_day = 100.0\n",
        );
        let one = noisy
            .aggregate(&scandic, &p, query())
            .await
            .unwrap()
            .release;
        let two = noisy
            .aggregate(&scandic, &p, query())
            .await
            .unwrap()
            .release;
        assert!(!Arc::ptr_eq(&one, &two), "noise is drawn afresh");
    }

    #[tokio::test]
    async fn the_budget_refills_on_the_next_local_day_by_the_gates_clock() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), StoreOptions::default()).unwrap();
        let policy_path = dir.path().join("policy.toml");
        let text = "version = 1\n[peer.scandic]\nscopes = [\"aggregate:read\"]\npurposes = [\"p\"]\ncategories = [\"all\"]\n\
                    finest_cell = 250\nfinest_bucket = \"hour\"\nepsilon_per_query = 1.0\nepsilon_per_day = 2.0\n";
        std::fs::write(&policy_path, text).unwrap();
        let policy = lagesbild_policy::Policy::parse(text).unwrap();
        let handle = Arc::new(PolicyHandle::new(policy_path, policy));
        // 2027-03-01 12:00 UTC: 13:00 in Stockholm.
        let noon = 1_804_075_200;
        let clock = lagesbild_vocabulary::ManualClock::at(noon);
        let (scandic, p) = (
            OrgId::parse("scandic").unwrap(),
            Purpose::parse("p").unwrap(),
        );
        let gate = ReleaseGate::new(
            OrgId::parse("polisen").unwrap(),
            handle,
            store,
            Default::default(),
        )
        .with_clock(clock.clone());
        let hour = u32::try_from(noon / 3600).unwrap();
        let query = || ReleaseQuery {
            from_hour: hour - 24,
            to_hour: hour,
            categories: Default::default(),
            area: None,
            cell_size: CellSize::M250,
            bucket: BucketKind::Day,
        };
        for _ in 0..2 {
            gate.aggregate(&scandic, &p, query()).await.unwrap();
        }
        let spent = gate.aggregate(&scandic, &p, query()).await.unwrap_err();
        assert!(matches!(spent, GateError::Budget { .. }), "{spent}");
        assert!(spent.to_string().contains("refills at"), "{spent}");
        // Still the same local day at 23:30 Stockholm time.
        clock.advance(std::time::Duration::from_secs(10 * 3600 + 1800));
        let still = gate.aggregate(&scandic, &p, query()).await.unwrap_err();
        assert!(matches!(still, GateError::Budget { .. }), "{still}");
        // Past local midnight: a new day, a new budget.
        clock.advance(std::time::Duration::from_secs(3600));
        gate.aggregate(&scandic, &p, query()).await.unwrap();
        assert_eq!(gate.spent_today("scandic"), Epsilon::from_micros(1_000_000));
    }
}
