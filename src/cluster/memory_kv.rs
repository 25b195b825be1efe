//! The buckets in memory, for the tests: one store per bucket shared by the simulated nodes, time
//! told by the test (`Clock`), and a `Link` per node that a test can cut (a partition: the node's
//! writes fail and its reads see the buckets as they were when the link was cut).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use super::kv::{Bucket, Entry, KvError, KvResult};

/// The simulated time every node and bucket reads.
#[derive(Clone)]
pub struct Clock(Arc<Mutex<Instant>>);

impl Clock {
    pub fn new() -> Self {
        Clock(Arc::new(Mutex::new(Instant::now())))
    }

    pub fn now(&self) -> Instant {
        *self.0.lock().unwrap()
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

/// One write of a key: a value, or a deletion.
struct Version {
    value: Option<Vec<u8>>,
    revision: u64,
    written: Instant,
}

/// A key's last write as a compare-and-set sees it: its value (`None`: deleted) and revision.
type Last = Option<(Option<Vec<u8>>, u64)>;

/// A bucket's every write, by key; values older than `max_age` are gone, as in JetStream.
pub struct Store {
    clock: Clock,
    max_age: Option<Duration>,
    writes: Mutex<(u64, BTreeMap<String, Vec<Version>>)>,
}

impl Store {
    pub fn new(clock: &Clock, max_age: Option<Duration>) -> Arc<Self> {
        Arc::new(Store { clock: clock.clone(), max_age, writes: Mutex::new((0, BTreeMap::new())) })
    }

    /// The key's last write as seen at `at` (`None`: never written, or expired).
    fn last_at(&self, versions: &[Version], at: Instant) -> Last {
        let last = versions.iter().rev().find(|v| v.written <= at)?;
        let expired = self.max_age.is_some_and(|age| at >= last.written + age);
        (!expired).then(|| (last.value.clone(), last.revision))
    }

    fn read(&self, key: &str, at: Instant) -> Option<Entry> {
        let writes = self.writes.lock().unwrap();
        let (value, revision) = self.last_at(writes.1.get(key)?, at)?;
        value.map(|value| Entry { value, revision })
    }

    fn keys_at(&self, at: Instant) -> Vec<String> {
        let writes = self.writes.lock().unwrap();
        writes.1.iter().filter(|(_, v)| matches!(self.last_at(v, at), Some((Some(_), _)))).map(|(k, _)| k.clone()).collect()
    }

    /// Writes `value` (`None`: deletes) if `allowed` accepts the key's last write (value, revision).
    fn write(&self, key: &str, value: Option<Vec<u8>>, allowed: impl Fn(Last) -> KvResult<()>) -> KvResult<u64> {
        let now = self.clock.now();
        let mut writes = self.writes.lock().unwrap();
        let last = writes.1.get(key).and_then(|v| self.last_at(v, now));
        allowed(last)?;
        writes.0 += 1;
        let revision = writes.0;
        writes.1.entry(key.to_string()).or_default().push(Version { value, revision, written: now });
        Ok(revision)
    }

    /// The key's value now, as the server holds it (whatever any node's link).
    pub fn value(&self, key: &str) -> Option<String> {
        self.read(key, self.clock.now()).map(|e| String::from_utf8_lossy(&e.value).into_owned())
    }
}

/// A node's connection to the buckets.
#[derive(Default)]
pub struct Link {
    cut_at: Mutex<Option<Instant>>,
}

impl Link {
    pub fn cut(&self, at: Instant) {
        *self.cut_at.lock().unwrap() = Some(at);
    }

    pub fn heal(&self) {
        *self.cut_at.lock().unwrap() = None;
    }

    fn cut_at(&self) -> Option<Instant> {
        *self.cut_at.lock().unwrap()
    }
}

/// A bucket as one node sees it through its link.
pub struct Handle {
    pub store: Arc<Store>,
    pub link: Arc<Link>,
}

impl Handle {
    fn reading_at(&self) -> Instant {
        self.link.cut_at().unwrap_or_else(|| self.store.clock.now())
    }

    fn writable(&self) -> KvResult<()> {
        match self.link.cut_at() {
            Some(_) => Err(KvError::Unavailable("partitioned: no answer from the store".into())),
            None => Ok(()),
        }
    }

    fn at_revision(revision: u64) -> impl Fn(Last) -> KvResult<()> {
        move |last| if last.is_some_and(|(_, r)| r == revision) { Ok(()) } else { Err(KvError::WrongRevision) }
    }
}

impl Bucket for Handle {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, KvResult<Option<Entry>>> {
        async move { Ok(self.store.read(key, self.reading_at())) }.boxed()
    }

    fn put<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, KvResult<u64>> {
        async move {
            self.writable()?;
            self.store.write(key, Some(value), |_| Ok(()))
        }
        .boxed()
    }

    fn create<'a>(&'a self, key: &'a str, value: Vec<u8>) -> BoxFuture<'a, KvResult<u64>> {
        async move {
            self.writable()?;
            self.store.write(key, Some(value), |last| if matches!(last, Some((Some(_), _))) { Err(KvError::AlreadyExists) } else { Ok(()) })
        }
        .boxed()
    }

    fn update<'a>(&'a self, key: &'a str, value: Vec<u8>, revision: u64) -> BoxFuture<'a, KvResult<u64>> {
        async move {
            self.writable()?;
            self.store.write(key, Some(value), Self::at_revision(revision))
        }
        .boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, KvResult<()>> {
        async move {
            self.writable()?;
            self.store.write(key, None, |_| Ok(())).map(|_| ())
        }
        .boxed()
    }

    fn delete_at<'a>(&'a self, key: &'a str, revision: u64) -> BoxFuture<'a, KvResult<()>> {
        async move {
            self.writable()?;
            self.store.write(key, None, Self::at_revision(revision)).map(|_| ())
        }
        .boxed()
    }

    fn keys(&self) -> BoxFuture<'_, KvResult<Vec<String>>> {
        async move { Ok(self.store.keys_at(self.reading_at())) }.boxed()
    }
}
