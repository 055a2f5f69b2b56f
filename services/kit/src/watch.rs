//! Wake whoever waits on a key when its value changes, so a long poll
//! waits here instead of asking the database again and again. Only keys
//! somebody waits on take memory; the last waiter to leave removes its key.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub struct Watchers<K, V> {
    waiting: Mutex<HashMap<K, watch::Sender<Option<V>>>>,
}

impl<K, V> Default for Watchers<K, V> {
    fn default() -> Self {
        Self {
            waiting: Mutex::default(),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone + PartialEq> Watchers<K, V> {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Start waiting on `key`. Take the watch *before* reading the current
    /// value, so a change between the read and the wait is not missed.
    pub fn watch(self: &Arc<Self>, key: K) -> Watch<K, V> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let rx = match waiting.get(&key) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(None);
                waiting.insert(key.clone(), tx);
                rx
            }
        };
        Watch {
            key: Some(key),
            rx,
            owner: self.clone(),
        }
    }

    /// `key` now has `value`: wake its waiters (unless they saw it already).
    pub fn announce(&self, key: &K, value: V) {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = waiting.get(key) {
            tx.send_if_modified(|current| {
                let changed = current.as_ref() != Some(&value);
                *current = Some(value);
                changed
            });
        }
    }

    /// Keys somebody waits on now.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// One waiter on one key.
pub struct Watch<K: Eq + Hash, V> {
    key: Option<K>,
    rx: watch::Receiver<Option<V>>,
    owner: Arc<Watchers<K, V>>,
}

impl<K: Eq + Hash, V> Watch<K, V> {
    /// Resolves once a value announced since the watch began satisfies
    /// `wanted`; never, if none does.
    pub async fn until(&mut self, mut wanted: impl FnMut(&V) -> bool) {
        if self
            .rx
            .wait_for(|v| v.as_ref().is_some_and(&mut wanted))
            .await
            .is_err()
        {
            // The sender lives in the map as long as this watch does.
            std::future::pending::<()>().await;
        }
    }
}

impl<K: Eq + Hash, V> Drop for Watch<K, V> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut waiting = self.owner.waiting.lock().unwrap_or_else(|p| p.into_inner());
        // This watch's receiver is still alive here: it is the last one if
        // the count is one. Nobody can subscribe meanwhile (the lock).
        if waiting.get(&key).is_some_and(|tx| tx.receiver_count() <= 1) {
            waiting.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_waiter_wakes_on_the_value_it_waits_for_only() {
        let watchers: Arc<Watchers<u32, &str>> = Watchers::new();
        let mut watch = watchers.watch(7);
        watchers.announce(&7, "awaiting_payment");
        watchers.announce(&8, "confirmed");
        let early = tokio::time::timeout(
            Duration::from_millis(50),
            watch.until(|s| *s == "confirmed"),
        )
        .await;
        assert!(early.is_err(), "woke for another key or another value");
        watchers.announce(&7, "confirmed");
        tokio::time::timeout(Duration::from_secs(5), watch.until(|s| *s == "confirmed"))
            .await
            .expect("the announced value woke the waiter");
    }

    #[tokio::test]
    async fn a_value_announced_before_the_wait_began_counts() {
        let watchers: Arc<Watchers<u32, u8>> = Watchers::new();
        let mut watch = watchers.watch(1);
        watchers.announce(&1, 2);
        tokio::time::timeout(Duration::from_secs(5), watch.until(|v| *v == 2))
            .await
            .expect("a change between watch and wait is not lost");
    }

    #[test]
    fn keys_are_forgotten_when_their_last_waiter_leaves() {
        let watchers: Arc<Watchers<u32, u8>> = Watchers::new();
        let first = watchers.watch(1);
        let second = watchers.watch(1);
        let other = watchers.watch(2);
        assert_eq!(watchers.waiting(), 2);
        drop(first);
        assert_eq!(watchers.waiting(), 2, "one waiter on key 1 remains");
        drop(second);
        drop(other);
        assert_eq!(watchers.waiting(), 0);
        // Announcing to nobody keeps nothing.
        watchers.announce(&1, 3);
        assert_eq!(watchers.waiting(), 0);
    }
}
