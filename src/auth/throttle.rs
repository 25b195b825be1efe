//! Failed sign-ins slowed down per account and per address: past `limit` failures within a minute,
//! every further attempt for that account or from that address is refused (429) without looking at
//! the password, until the oldest failure is a minute old.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(60);
/// Keys kept at most (an attacker inventing names must not grow the map without end): beyond it,
/// keys whose failures are all older than the window are dropped.
const MAX_KEYS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

pub struct Throttle {
    limit: usize,
    failures: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl Throttle {
    pub fn new(limit: u32) -> Self {
        Self { limit: limit as usize, failures: Mutex::new(HashMap::new()) }
    }

    fn keys(name: &str, address: Option<IpAddr>) -> Vec<Key> {
        // A name is at most 64 characters; a longer one is cut so that no key holds megabytes.
        let mut keys = vec![Key::Account(name.chars().take(64).collect())];
        keys.extend(address.map(Key::Address));
        keys
    }

    /// `Err(seconds to wait)` when the account or the address has used up its failures.
    pub fn check(&self, name: &str, address: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = None;
        for key in Self::keys(name, address) {
            if let Some(times) = map.get_mut(&key) {
                while times.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                    times.pop_front();
                }
                if times.len() >= self.limit {
                    let left = WINDOW.saturating_sub(now.duration_since(times[0])).as_secs().max(1);
                    wait = Some(wait.map_or(left, |w: u64| w.max(left)));
                }
            }
        }
        wait.map_or(Ok(()), Err)
    }

    /// A failed sign-in, counted for both the account and the address.
    pub fn fail(&self, name: &str, address: Option<IpAddr>, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS {
            map.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        for key in Self::keys(name, address) {
            let times = map.entry(key).or_default();
            times.push_back(now);
            // Only the newest `limit` matter.
            while times.len() > self.limit {
                times.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_failure_in_a_minute_waits() {
        let t = Throttle::new(10);
        let t0 = Instant::now();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for i in 0..10 {
            assert_eq!(t.check("ann", Some(ip), t0), Ok(()), "attempt {}", i + 1);
            t.fail("ann", Some(ip), t0 + Duration::from_secs(i));
        }
        let later = t0 + Duration::from_secs(10);
        assert_eq!(t.check("ann", Some(ip), later), Err(50));
        // Another name from the same address: the address is used up too.
        assert!(t.check("bob", Some(ip), later).is_err());
        // The account from another address: the account is used up.
        assert!(t.check("ann", Some("10.0.0.1".parse().unwrap()), later).is_err());
        // Another name from another address: free.
        assert_eq!(t.check("bob", Some("10.0.0.1".parse().unwrap()), later), Ok(()));
        // A minute after the first failure, one more attempt is let through.
        assert_eq!(t.check("ann", Some(ip), t0 + Duration::from_secs(60)), Ok(()));
    }
}
