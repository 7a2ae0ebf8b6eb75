//! Delivery ids seen within the replay window, so a second delivery of the same id is
//! refused. Bounded: when full of unexpired ids, new deliveries are refused rather than
//! remembered partially (a forgotten id could be replayed).

use std::{
    collections::{HashSet, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

/// Ids one endpoint remembers at most.
pub const MAX_IDS: usize = 100_000;
/// Longest id kept; longer ones are hashed down to nothing useful, so refused.
pub const MAX_ID_LEN: usize = 256;

#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    First,
    Again,
    /// The cache is full of ids younger than the window.
    Full,
    TooLong,
}

pub struct DeliveryIds {
    window: Duration,
    inner: Mutex<Ids>,
}

#[derive(Default)]
struct Ids {
    order: VecDeque<(Instant, String)>,
    set: HashSet<String>,
}

impl DeliveryIds {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            inner: Mutex::new(Ids::default()),
        }
    }

    /// Records `id` unless it was seen within the window.
    pub fn check_and_insert(&self, id: &str, now: Instant) -> Seen {
        if id.len() > MAX_ID_LEN {
            return Seen::TooLong;
        }
        let mut ids = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while let Some((at, _)) = ids.order.front() {
            if now.duration_since(*at) < self.window {
                break;
            }
            if let Some((_, old)) = ids.order.pop_front() {
                ids.set.remove(&old);
            }
        }
        if ids.set.contains(id) {
            return Seen::Again;
        }
        if ids.set.len() >= MAX_IDS {
            return Seen::Full;
        }
        ids.set.insert(id.to_owned());
        ids.order.push_back((now, id.to_owned()));
        Seen::First
    }

    /// Forgets `id`: its delivery was not stored, so the sender's retry must get through.
    pub fn forget(&self, id: &str) {
        let mut ids = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if ids.set.remove(id) {
            ids.order.retain(|(_, i)| i != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_accepted_once_per_window() {
        let ids = DeliveryIds::new(Duration::from_secs(300));
        let t = Instant::now();
        assert_eq!(ids.check_and_insert("a", t), Seen::First);
        assert_eq!(
            ids.check_and_insert("a", t + Duration::from_secs(299)),
            Seen::Again
        );
        assert_eq!(ids.check_and_insert("b", t), Seen::First);
        assert_eq!(
            ids.check_and_insert("a", t + Duration::from_secs(300)),
            Seen::First
        );
        ids.forget("b");
        assert_eq!(
            ids.check_and_insert("b", t + Duration::from_secs(1)),
            Seen::First
        );
        assert_eq!(ids.check_and_insert(&"x".repeat(300), t), Seen::TooLong);
    }
}
