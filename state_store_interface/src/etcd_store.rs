//! [`EtcdStore`]: the cluster's store, on etcd v3 (feature `etcd`).
//!
//! The trait maps one-to-one onto etcd: an entry is the key `{prefix}/{kind}/{key}` (kind as a
//! short stable name, see [`kind_name`]), its revisions are etcd's create and mod revisions, a
//! batch is one etcd transaction whose compares are the batch's preconditions, a watch is an
//! etcd watch, and a lease is an etcd lease. Only the event log is built on top: events live
//! under `{prefix}/events/log/{seq}` with their counter at `{prefix}/events/seq`, advanced by
//! compare-and-swap.
//!
//! # What etcd must allow
//! etcd refuses a transaction of more than `--max-txn-ops` operations (default 128). A batch is
//! atomic by contract, so it cannot be split: the store refuses a batch larger than
//! [`EtcdOptions::max_txn_ops`] with a non-transient error naming the flag. The default,
//! [`DEFAULT_MAX_TXN_OPS`] = 128, is etcd's own, so any etcd works: the core's writers cut what
//! needs no atomicity (the persister's batches of instance records, an agent's reports) into
//! commits of at most 100 operations plus a leader's fence. Raise both together if larger
//! atomic batches are ever needed.
//!
//! # Watches
//! etcd-client does not reconnect a watch: the store's watch task does. When the stream fails
//! (etcd restarted, network error) it re-connects, checks that the store is still the same
//! (cluster id, revisions: see below) and watches again from the last delivered revision + 1,
//! so nothing is lost or repeated. A watch that etcd cancels because its revision was
//! compacted ends with [`StoreError::Compacted`]. A watch of one kind watches that kind's
//! prefix; a watch of several watches the common prefix and drops the other kinds' changes in
//! the client (one etcd watch keeps the revision order trivially).
//!
//! # Reset detection
//! The store remembers etcd's cluster id and the highest revision any answer showed. An answer
//! from another cluster, or with a revision lower than one seen before the request was sent,
//! means etcd was wiped or replaced: that call fails with [`StoreError::Reset`].

use crate::coordination::{Coordination, LeaseId};
use crate::rules;
use crate::store::{
    Entry, EventFilter, Kind, KindSet, LimitFrom, Op, Precondition, Revision, StateStore, Watch,
    WatchEvent,
};
use crate::StoreError;
use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions, KeyValue,
    PutOptions, ResponseHeader, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use orchestrator_shared_types::Event;
use std::future::Future;
use std::ops::Bound;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;

/// The `--max-txn-ops` the store needs of etcd by default (see the module docs).
pub const DEFAULT_MAX_TXN_OPS: usize = 128;
/// Events of the event log kept by default (as the other stores).
pub const DEFAULT_EVENTS: usize = 10_000;

/// How an [`EtcdStore`] talks to etcd.
#[derive(Clone, Debug)]
pub struct EtcdOptions {
    /// Time to open a connection: a down etcd fails this fast.
    pub connect_timeout: Duration,
    /// Time a request may take before it fails as [`StoreError::Unavailable`].
    pub request_timeout: Duration,
    /// The events of the log that are kept.
    pub event_limit: usize,
    /// The largest batch: must not exceed etcd's `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// Changes a watcher may have queued before the watch waits for it.
    pub watch_buffer: usize,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            event_limit: DEFAULT_EVENTS,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            watch_buffer: 1024,
        }
    }
}

/// The stable name of `kind` in etcd keys.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Workload => "workloads",
        Kind::Instance => "instances",
        Kind::Node => "nodes",
        Kind::Assignment => "assignments",
        Kind::ContainerStatus => "container-statuses",
        Kind::Cluster => "cluster",
    }
}

/// The state store on etcd. Cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct EtcdStore {
    shared: Arc<Shared>,
}

struct Shared {
    endpoints: Vec<String>,
    prefix: String,
    options: EtcdOptions,
    client: Mutex<Client>,
    seen: Mutex<Seen>,
}

/// What the answers so far showed of the etcd cluster.
#[derive(Clone, Copy, Default)]
struct Seen {
    cluster_id: Option<u64>,
    revision: i64,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.shared.endpoints)
            .field("prefix", &self.shared.prefix)
            .finish()
    }
}

/// Maps a client error: connection trouble is transient ([`StoreError::Unavailable`]), what
/// etcd refuses is not.
fn unavailable(operation: &'static str, e: etcd_client::Error) -> StoreError {
    use etcd_client::Error as E;
    // gRPC codes Cancelled (1), Unknown (2: transport failures show so), DeadlineExceeded (4),
    // Unavailable (14).
    let transient = match &e {
        E::GRpcStatus(status) => matches!(i32::from(status.code()), 1 | 2 | 4 | 14),
        E::TransportError(_) | E::IoError(_) => true,
        _ => false,
    };
    if transient {
        StoreError::unavailable(operation, e)
    } else {
        StoreError::Backend {
            operation,
            source: e.into(),
        }
    }
}

/// `prefix`'s etcd range end: the first key after every key that starts with it.
fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn rev(r: i64) -> Revision {
    r.max(0) as Revision
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://host:port`), with keys under `prefix`, and
    /// checks that it answers (a down etcd fails with [`StoreError::Unavailable`] within the
    /// connect timeout).
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, StoreError> {
        Self::connect_with(endpoints, prefix, EtcdOptions::default()).await
    }

    /// [`EtcdStore::connect`] with options.
    pub async fn connect_with(
        endpoints: &[String],
        prefix: &str,
        options: EtcdOptions,
    ) -> Result<Self, StoreError> {
        let client = new_client(endpoints, &options).await?;
        let store = Self {
            shared: Arc::new(Shared {
                endpoints: endpoints.to_vec(),
                prefix: prefix.trim_end_matches('/').to_owned(),
                options,
                client: Mutex::new(client),
                seen: Mutex::new(Seen::default()),
            }),
        };
        // Learns the cluster id and the revision, and fails fast if etcd is down.
        let timeout = store.shared.options.connect_timeout;
        store.revision_within(timeout).await?;
        Ok(store)
    }

    /// The endpoints it connects to.
    pub fn endpoints(&self) -> &[String] {
        &self.shared.endpoints
    }

    /// The prefix of its keys.
    pub fn prefix(&self) -> &str {
        &self.shared.prefix
    }

    /// The prefixes under which this etcd holds a cluster (a `{prefix}/cluster/id` key),
    /// sorted; this store's own prefix among them if it holds one. Reads the keys (not the
    /// values) of the whole keyspace: meant for start-up, to tell an operator who picked a
    /// prefix without a cluster where the clusters are.
    pub async fn cluster_prefixes(&self) -> Result<Vec<String>, StoreError> {
        let answer = self
            .get_range(
                "cluster_prefixes",
                vec![0],
                GetOptions::new().with_range(vec![0]).with_keys_only(),
            )
            .await?;
        let suffix = format!("/{}/id", kind_name(Kind::Cluster));
        let mut prefixes: Vec<String> = answer
            .kvs()
            .iter()
            .filter_map(|kv| std::str::from_utf8(kv.key()).ok())
            .filter_map(|key| key.strip_suffix(suffix.as_str()))
            .map(str::to_owned)
            .collect();
        prefixes.sort();
        prefixes.dedup();
        Ok(prefixes)
    }

    /// `etcd:{first endpoint}/{prefix}`, for logs.
    pub fn describe(&self) -> String {
        format!(
            "etcd:{}/{}",
            self.shared.endpoints.first().map_or("", String::as_str),
            self.shared.prefix
        )
    }

    fn client(&self) -> Client {
        self.shared
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn kind_prefix(&self, kind: Kind) -> String {
        format!("{}/{}/", self.shared.prefix, kind_name(kind))
    }

    fn full_key(&self, kind: Kind, key: &str) -> String {
        format!("{}/{}/{}", self.shared.prefix, kind_name(kind), key)
    }

    fn event_key(&self, seq: u64) -> String {
        format!("{}/events/log/{seq:020}", self.shared.prefix)
    }

    fn seq_key(&self) -> String {
        format!("{}/events/seq", self.shared.prefix)
    }

    /// The kind and key of a full etcd key under the prefix, if it is an entry's.
    fn split_key(&self, full: &[u8]) -> Option<(Kind, String)> {
        let full = std::str::from_utf8(full).ok()?;
        let rest = full
            .strip_prefix(self.shared.prefix.as_str())?
            .strip_prefix('/')?;
        let (name, key) = rest.split_once('/')?;
        let kind = Kind::ALL.into_iter().find(|k| kind_name(*k) == name)?;
        Some((kind, key.to_owned()))
    }

    fn entry(&self, kind: Kind, kv: &KeyValue) -> Option<Entry> {
        let (_, key) = self.split_key(kv.key())?;
        Some(Entry {
            kind,
            key,
            value: kv.value().to_vec(),
            create_revision: rev(kv.create_revision()),
            mod_revision: rev(kv.mod_revision()),
        })
    }

    /// Runs one request with the request timeout, maps its errors and checks its header.
    async fn call<T, F>(
        &self,
        operation: &'static str,
        timeout: Duration,
        request: impl FnOnce(Client) -> F,
        header: impl FnOnce(&T) -> Option<&ResponseHeader>,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let before = self.seen();
        let answer = match tokio::time::timeout(timeout, request(self.client())).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err(unavailable(operation, e)),
            Err(_) => {
                return Err(StoreError::unavailable(
                    operation,
                    format!("etcd did not answer within {timeout:?}"),
                ))
            }
        };
        if let Some(h) = header(&answer) {
            self.check_header(before, h)?;
        }
        Ok(answer)
    }

    fn seen(&self) -> Seen {
        *self
            .shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails with [`StoreError::Reset`] if `header` comes from another cluster, or shows a
    /// revision lower than `before` (what was seen before the request was sent: a request
    /// applied later cannot see an older revision, whereas concurrent ones may answer in any
    /// order).
    fn check_header(&self, before: Seen, header: &ResponseHeader) -> Result<(), StoreError> {
        let mut seen = self
            .shared
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = seen.cluster_id {
            if id != header.cluster_id() {
                return Err(StoreError::Reset {
                    reason: format!(
                        "etcd's cluster id changed from {id:x} to {:x}",
                        header.cluster_id()
                    ),
                });
            }
        }
        if header.revision() < before.revision {
            return Err(StoreError::Reset {
                reason: format!(
                    "etcd's revision went back from {} to {}: it was wiped or replaced",
                    before.revision,
                    header.revision()
                ),
            });
        }
        seen.cluster_id = Some(header.cluster_id());
        seen.revision = seen.revision.max(header.revision());
        Ok(())
    }

    async fn get_range(
        &self,
        operation: &'static str,
        key: Vec<u8>,
        options: GetOptions,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        self.call(
            operation,
            self.shared.options.request_timeout,
            |mut c| async move { c.get(key, Some(options)).await },
            |r: &etcd_client::GetResponse| r.header(),
        )
        .await
    }

    async fn revision_within(&self, timeout: Duration) -> Result<Revision, StoreError> {
        let key = self.seq_key();
        let answer = self
            .call(
                "revision",
                timeout,
                |mut c| async move { c.get(key, Some(GetOptions::new().with_count_only())).await },
                |r: &etcd_client::GetResponse| r.header(),
            )
            .await?;
        Ok(answer.header().map_or(0, |h| rev(h.revision())))
    }

    fn compare(&self, key: &str, precondition: Precondition) -> Vec<Compare> {
        match precondition {
            Precondition::None => vec![],
            Precondition::Absent => vec![Compare::create_revision(key, CompareOp::Equal, 0)],
            Precondition::Exists => vec![Compare::create_revision(key, CompareOp::Greater, 0)],
            Precondition::ModRevision(r) => {
                let mut compares = vec![Compare::mod_revision(key, CompareOp::Equal, r as i64)];
                if r == 0 {
                    // An absent key's mod revision is 0 too; the trait says it must exist.
                    compares.push(Compare::create_revision(key, CompareOp::Greater, 0));
                }
                compares
            }
        }
    }

    /// One transaction: `ops` (etcd's) if every precondition of `checked` holds; else a read
    /// of each checked key, to name the first that failed. Returns the commit's revision.
    async fn transact(
        &self,
        operation: &'static str,
        checked: Vec<(Kind, String, Precondition)>,
        ops: Vec<TxnOp>,
    ) -> Result<Revision, StoreError> {
        let mut compares = Vec::new();
        let mut reads = Vec::new();
        for (kind, key, precondition) in &checked {
            if *precondition == Precondition::None {
                continue;
            }
            let full = self.full_key(*kind, key);
            compares.extend(self.compare(&full, *precondition));
            reads.push(TxnOp::get(full, None));
        }
        let size = ops.len().max(compares.len());
        if size > self.shared.options.max_txn_ops {
            return Err(StoreError::Backend {
                operation,
                source: format!(
                    "a batch of {size} operations is more than the {} this store allows in one \
                     etcd transaction (EtcdOptions::max_txn_ops, which must not exceed etcd's \
                     --max-txn-ops)",
                    self.shared.options.max_txn_ops
                )
                .into(),
            });
        }
        let txn = Txn::new().when(compares).and_then(ops).or_else(reads);
        let answer = self
            .call(
                operation,
                self.shared.options.request_timeout,
                |mut c| async move { c.txn(txn).await },
                |r: &etcd_client::TxnResponse| r.header(),
            )
            .await?;
        if answer.succeeded() {
            return Ok(answer.header().map_or(0, |h| rev(h.revision())));
        }
        // The reads ran atomically with the failed compares: the first op they fail is it.
        let found = answer.op_responses().into_iter().map(|r| match r {
            TxnOpResponse::Get(get) => get.kvs().first().map(|kv| rev(kv.mod_revision())),
            _ => None,
        });
        let conditional = checked
            .into_iter()
            .filter(|(_, _, p)| *p != Precondition::None);
        let mut first = None;
        for ((kind, key, precondition), current) in conditional.zip(found) {
            rules::check_precondition(kind, &key, precondition, current)?;
            first.get_or_insert((kind, key));
        }
        let (kind, key) = first.unwrap_or((Kind::Cluster, String::new()));
        Err(StoreError::Conflict {
            kind,
            key,
            reason: "a precondition failed".into(),
        })
    }

    /// Fails with [`StoreError::Compacted`] if etcd no longer keeps every change after
    /// `after` under `key`'s range: a read at revision `after + 1` fails then.
    async fn check_kept(&self, after: Revision, key: &[u8]) -> Result<(), StoreError> {
        let options = GetOptions::new()
            .with_range(range_end(key))
            .with_count_only()
            .with_revision(after as i64 + 1);
        let key = key.to_vec();
        match self.get_range("watch", key.clone(), options).await {
            Ok(_) => Ok(()),
            // Nothing after `after` exists yet: nothing can be compacted.
            Err(e) if source_has(&e, "future revision") => Ok(()),
            Err(e) if source_has(&e, "compacted") => {
                // etcd says which revision it compacted to only on a watch.
                let mut client = self.client();
                let start = after as i64 + 1;
                let options = WatchOptions::new().with_prefix().with_start_revision(start);
                let oldest = tokio::time::timeout(self.shared.options.request_timeout, async {
                    let mut stream = client.watch(key, Some(options)).await.ok()?;
                    while let Ok(Some(answer)) = stream.message().await {
                        if answer.compact_revision() > 0 {
                            return Some(rev(answer.compact_revision()));
                        }
                    }
                    None
                })
                .await
                .ok()
                .flatten()
                .unwrap_or(after + 1);
                Err(StoreError::Compacted {
                    requested: after,
                    oldest,
                })
            }
            Err(e) => Err(e),
        }
    }
}

fn source_has(e: &StoreError, text: &str) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.to_string().contains(text))
}

async fn new_client(endpoints: &[String], options: &EtcdOptions) -> Result<Client, StoreError> {
    let connect = ConnectOptions::new()
        .with_connect_timeout(options.connect_timeout)
        .with_timeout(options.request_timeout);
    match tokio::time::timeout(
        options.connect_timeout,
        Client::connect(endpoints, Some(connect)),
    )
    .await
    {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(unavailable("connect", e)),
        Err(_) => Err(StoreError::unavailable(
            "connect",
            format!("no connection to etcd within {:?}", options.connect_timeout),
        )),
    }
}

#[async_trait]
impl StateStore for EtcdStore {
    async fn get(&self, kind: Kind, key: &str) -> Result<Option<Entry>, StoreError> {
        let answer = self
            .get_range(
                "get",
                self.full_key(kind, key).into_bytes(),
                GetOptions::new(),
            )
            .await?;
        Ok(answer.kvs().first().and_then(|kv| self.entry(kind, kv)))
    }

    async fn list(&self, kind: Kind, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        self.list_page(kind, prefix, None, usize::MAX).await
    }

    async fn list_page<'a>(
        &self,
        kind: Kind,
        prefix: &str,
        start_after: Option<&'a str>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let base = self.kind_prefix(kind);
        let end = range_end(format!("{base}{prefix}").as_bytes());
        let start = match rules::page_start(prefix, start_after) {
            Bound::Excluded(after) => format!("{base}{after}\0"),
            Bound::Included(from) => format!("{base}{from}"),
            Bound::Unbounded => base.clone(),
        };
        // etcd's 0 is "no limit".
        let limit = i64::try_from(limit).unwrap_or(0);
        let options = GetOptions::new().with_range(end).with_limit(limit);
        let answer = self.get_range("list", start.into_bytes(), options).await?;
        Ok(answer
            .kvs()
            .iter()
            .filter_map(|kv| self.entry(kind, kv))
            .collect())
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        rules::check_batch(&ops)?;
        if ops.is_empty() {
            return self.revision().await;
        }
        let mut checked = Vec::with_capacity(ops.len());
        let mut writes = Vec::with_capacity(ops.len());
        for op in ops {
            let (kind, key) = op.target();
            let full = self.full_key(kind, key);
            checked.push((kind, key.to_owned(), op.precondition()));
            match op {
                Op::Put { value, .. } => writes.push(TxnOp::put(full, value, None)),
                Op::Delete { .. } => writes.push(TxnOp::delete(full, None)),
                Op::Check { .. } => {}
            }
        }
        // A transaction whose deletes delete nothing changes nothing: etcd answers with the
        // current revision and does not move it, which is the trait's rule.
        self.transact("commit", checked, writes).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.revision_within(self.shared.options.request_timeout)
            .await
    }

    async fn watch_kinds(&self, after: Revision, kinds: KindSet) -> Result<Watch, StoreError> {
        let watched: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| kinds.contains(*k))
            .collect();
        let key = match watched.as_slice() {
            [one] => self.kind_prefix(*one),
            _ => format!("{}/", self.shared.prefix),
        }
        .into_bytes();
        self.check_kept(after, &key).await?;
        let (tx, rx) = mpsc::channel(self.shared.options.watch_buffer.max(1));
        let task = WatchTask {
            store: self.clone(),
            key,
            kinds,
            last: after,
            tx,
        };
        tokio::spawn(task.run());
        Ok(Watch::new(rx))
    }

    /// A watch on the key prefix itself: etcd sends only those keys.
    async fn watch_prefix(
        &self,
        after: Revision,
        kind: Kind,
        prefix: &str,
    ) -> Result<Watch, StoreError> {
        let key = format!("{}{prefix}", self.kind_prefix(kind)).into_bytes();
        self.check_kept(after, &key).await?;
        let (tx, rx) = mpsc::channel(self.shared.options.watch_buffer.max(1));
        let task = WatchTask {
            store: self.clone(),
            key,
            kinds: KindSet::of(&[kind]),
            last: after,
            tx,
        };
        tokio::spawn(task.run());
        Ok(Watch::new(rx))
    }

    async fn append_events(&self, mut events: Vec<Event>) -> Result<(), StoreError> {
        let chunk = self.shared.options.max_txn_ops.saturating_sub(2).max(1);
        while !events.is_empty() {
            let rest = events.split_off(events.len().min(chunk));
            self.append_chunk(std::mem::replace(&mut events, rest))
                .await?;
        }
        Ok(())
    }

    async fn list_events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        let Some(first) = rules::first_seq(filter) else {
            return Ok(Vec::new());
        };
        let limit = filter.limit.unwrap_or(usize::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        const PAGE: i64 = 500;
        let start = self.event_key(first);
        let end = range_end(format!("{}/events/log/", self.shared.prefix).as_bytes());
        // Reads pages from the end the limit counts from, until enough match.
        let oldest = filter.limit_from == LimitFrom::Oldest;
        let mut candidates: Vec<Event> = Vec::new();
        let mut matched = 0usize;
        let mut from = start.clone().into_bytes();
        let mut to = end;
        loop {
            let mut options = GetOptions::new().with_range(to.clone()).with_limit(PAGE);
            if !oldest {
                options = options.with_sort(SortTarget::Key, SortOrder::Descend);
            }
            let answer = self.get_range("list_events", from.clone(), options).await?;
            let kvs = answer.kvs();
            for kv in kvs {
                let event: Event =
                    serde_json::from_slice(kv.value()).map_err(|e| StoreError::Backend {
                        operation: "list_events",
                        source: Box::new(e),
                    })?;
                if filter.workload_id.is_none() || event.workload_id == filter.workload_id {
                    matched += 1;
                }
                candidates.push(event);
            }
            let Some(last) = kvs.last() else { break };
            if (kvs.len() as i64) < PAGE || matched >= limit {
                break;
            }
            if oldest {
                from = last.key().to_vec();
                from.push(0);
            } else {
                to = last.key().to_vec();
            }
        }
        if !oldest {
            candidates.reverse();
        }
        rules::select_events(filter, candidates.into_iter().map(Ok::<_, StoreError>))
    }
}

impl EtcdStore {
    /// Appends one chunk of events: the counter and the events in one transaction, retried
    /// while another writer advances the counter first.
    async fn append_chunk(&self, mut events: Vec<Event>) -> Result<(), StoreError> {
        let seq_key = self.seq_key();
        loop {
            let answer = self
                .get_range(
                    "append_events",
                    seq_key.clone().into_bytes(),
                    GetOptions::new(),
                )
                .await?;
            let (last_seq, compare) = match answer.kvs().first() {
                Some(kv) => (
                    std::str::from_utf8(kv.value())
                        .ok()
                        .and_then(|s| s.parse::<u64>().ok())
                        .unwrap_or(0),
                    Compare::mod_revision(seq_key.clone(), CompareOp::Equal, kv.mod_revision()),
                ),
                None => (
                    0,
                    Compare::create_revision(seq_key.clone(), CompareOp::Equal, 0),
                ),
            };
            let last = rules::number_events(&mut events, last_seq);
            let mut ops = vec![TxnOp::put(seq_key.clone(), last.to_string(), None)];
            for event in &events {
                let value = serde_json::to_vec(event).map_err(|e| StoreError::Backend {
                    operation: "append_events",
                    source: Box::new(e),
                })?;
                ops.push(TxnOp::put(self.event_key(event.seq), value, None));
            }
            let dropped = rules::last_dropped_seq(last, self.shared.options.event_limit as u64);
            if dropped > 0 {
                ops.push(TxnOp::delete(
                    self.event_key(0),
                    Some(DeleteOptions::new().with_range(self.event_key(dropped + 1))),
                ));
            }
            let txn = Txn::new().when(vec![compare]).and_then(ops);
            let answer = self
                .call(
                    "append_events",
                    self.shared.options.request_timeout,
                    |mut c| async move { c.txn(txn).await },
                    |r: &etcd_client::TxnResponse| r.header(),
                )
                .await?;
            if answer.succeeded() {
                return Ok(());
            }
        }
    }
}

/// Feeds one [`Watch`] from etcd, re-connecting and re-watching from the last delivered
/// revision when the stream fails. Ends when the watcher is dropped, or with an error.
struct WatchTask {
    store: EtcdStore,
    key: Vec<u8>,
    kinds: KindSet,
    /// The last revision whose changes were all delivered.
    last: Revision,
    tx: mpsc::Sender<Result<WatchEvent, StoreError>>,
}

enum Ended {
    /// The watcher went away.
    Dropped,
    /// The stream failed: re-connect and watch again.
    Broken,
    /// The watch cannot go on.
    Failed(StoreError),
}

impl WatchTask {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let mut first = true;
        loop {
            if !first {
                // Re-connect, and make sure it is the same store before watching on.
                let tx = self.tx.clone();
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                match new_client(&self.store.shared.endpoints, &self.store.shared.options).await {
                    Ok(client) => {
                        *self
                            .store
                            .shared
                            .client
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = client;
                    }
                    Err(_) => continue,
                }
                match self.store.check_kept(self.last, &self.key).await {
                    Ok(()) => {}
                    Err(e) if e.is_transient() => continue,
                    Err(e) => {
                        let _ = self.tx.send(Err(e)).await;
                        return;
                    }
                }
            }
            first = false;
            match self.follow(&mut backoff).await {
                Ended::Dropped => return,
                Ended::Broken => {}
                Ended::Failed(e) => {
                    let _ = self.tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }

    /// One etcd watch from `last + 1`, until it ends.
    async fn follow(&mut self, backoff: &mut Duration) -> Ended {
        let mut client = self.store.client();
        let options = WatchOptions::new()
            .with_range(range_end(&self.key))
            .with_start_revision(self.last as i64 + 1);
        let tx = self.tx.clone();
        let mut stream = tokio::select! {
            _ = tx.closed() => return Ended::Dropped,
            stream = client.watch(self.key.clone(), Some(options)) => match stream {
                Ok(stream) => stream,
                Err(_) => return Ended::Broken,
            },
        };
        loop {
            let answer = tokio::select! {
                _ = tx.closed() => return Ended::Dropped,
                answer = stream.message() => answer,
            };
            let answer = match answer {
                Ok(Some(answer)) => answer,
                Ok(None) | Err(_) => return Ended::Broken,
            };
            if answer.compact_revision() > 0 {
                return Ended::Failed(StoreError::Compacted {
                    requested: self.last,
                    oldest: rev(answer.compact_revision()),
                });
            }
            if answer.canceled() {
                return Ended::Broken;
            }
            if let Some(header) = answer.header() {
                let seen = self.store.seen();
                if seen.cluster_id.is_some_and(|id| id != header.cluster_id()) {
                    return Ended::Failed(StoreError::Reset {
                        reason: "etcd's cluster id changed under a watch".into(),
                    });
                }
            }
            // A response holds whole revisions (a transaction's events come together).
            for event in answer.events() {
                let Some(kv) = event.kv() else { continue };
                let revision = rev(kv.mod_revision());
                self.last = self.last.max(revision);
                let Some((kind, key)) = self.store.split_key(kv.key()) else {
                    continue;
                };
                if !self.kinds.contains(kind) {
                    continue;
                }
                let change = WatchEvent {
                    revision,
                    kind,
                    key,
                    value: match event.event_type() {
                        EventType::Put => Some(kv.value().to_vec()),
                        EventType::Delete => None,
                    },
                };
                if self.tx.send(Ok(change)).await.is_err() {
                    return Ended::Dropped;
                }
                *backoff = Duration::from_millis(100);
            }
        }
    }
}

#[async_trait]
impl Coordination for EtcdStore {
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let secs = (ttl.as_millis().div_ceil(1000) as i64).max(1);
        let answer = self
            .call(
                "grant_lease",
                self.shared.options.request_timeout,
                |mut c| async move { c.lease_grant(secs, None).await },
                |r: &etcd_client::LeaseGrantResponse| r.header(),
            )
            .await?;
        Ok(answer.id())
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let result = tokio::time::timeout(self.shared.options.request_timeout, async {
            let mut client = self.client();
            client.lease_keep_alive(lease).await.map(|_| ())
        })
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) => {
                Err(StoreError::LeaseExpired { lease })
            }
            Ok(Err(e)) => Err(unavailable("keep_alive", e)),
            Err(_) => Err(StoreError::unavailable(
                "keep_alive",
                "etcd did not answer in time",
            )),
        }
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        let result = self
            .call(
                "revoke_lease",
                self.shared.options.request_timeout,
                |mut c| async move { c.lease_revoke(lease).await },
                |r: &etcd_client::LeaseRevokeResponse| r.header(),
            )
            .await;
        match result {
            Err(e) if source_has(&e, "lease not found") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn put_leased(
        &self,
        kind: Kind,
        key: &str,
        value: Vec<u8>,
        lease: LeaseId,
        precondition: Precondition,
    ) -> Result<Revision, StoreError> {
        let full = self.full_key(kind, key);
        let put = TxnOp::put(full, value, Some(PutOptions::new().with_lease(lease)));
        match self
            .transact(
                "put_leased",
                vec![(kind, key.to_owned(), precondition)],
                vec![put],
            )
            .await
        {
            Err(e) if source_has(&e, "lease not found") => Err(StoreError::LeaseExpired { lease }),
            other => other,
        }
    }
}
