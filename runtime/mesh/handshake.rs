//! Incoming handshakes: which may hold state, and how refusals are reported. Deterministic core: no
//! I/O, no clock (time arrives as a value), no quinn.
//!
//! [`HandshakeSlots`] bounds the handshakes in flight overall and per source address, so a flood from
//! one address cannot take the slots members need. [`RefusalLog`] turns a stream of refusals into at
//! most one log line per interval: the first refusal after a quiet interval is logged at once, the rest
//! are counted by reason and summarized when the interval ends.
//!
//! Invariant: `HandshakeSlots` holds an entry only for a source with a handshake in flight, so its map
//! never exceeds the global bound.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;

use crate::ids::Millis;

/// Why an incoming handshake was given no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefusal {
    /// Every slot is taken.
    Busy,
    /// The source address already holds its share of slots.
    SourceBusy,
}

impl SlotRefusal {
    /// The `reason` label of `gridkeeper_mesh_handshake_refusals_total`.
    pub fn reason(self) -> &'static str {
        match self {
            SlotRefusal::Busy => "busy",
            SlotRefusal::SourceBusy => "source_busy",
        }
    }
}

/// Handshakes in flight, overall and per source address.
#[derive(Debug, Clone)]
pub struct HandshakeSlots {
    total_max: usize,
    per_source_max: usize,
    in_flight: usize,
    per_source: HashMap<IpAddr, usize>,
}

impl HandshakeSlots {
    /// Slots bounded by `total_max` overall and `per_source_max` per source address.
    pub fn new(total_max: usize, per_source_max: usize) -> HandshakeSlots {
        HandshakeSlots { total_max, per_source_max, in_flight: 0, per_source: HashMap::new() }
    }

    /// Takes a slot for a handshake from `source`; the caller must [`release`](Self::release) it.
    ///
    /// # Errors
    /// [`SlotRefusal`] when the source's share or every slot is taken; nothing is taken then.
    pub fn try_admit(&mut self, source: IpAddr) -> Result<(), SlotRefusal> {
        let held = self.per_source.get(&source).copied().unwrap_or(0);
        if held >= self.per_source_max {
            return Err(SlotRefusal::SourceBusy);
        }
        if self.in_flight >= self.total_max {
            return Err(SlotRefusal::Busy);
        }
        self.in_flight += 1;
        self.per_source.insert(source, held + 1);
        Ok(())
    }

    /// Gives back a slot taken for `source`.
    ///
    /// # Panics
    /// If `source` holds no slot: a release without an admission is a bug in the caller.
    pub fn release(&mut self, source: IpAddr) {
        let held = self.per_source.get_mut(&source).expect("a released slot was admitted");
        *held -= 1;
        if *held == 0 {
            self.per_source.remove(&source);
        }
        self.in_flight -= 1;
    }

    /// Handshakes in flight overall.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

/// Refusals counted by reason over an interval, to be logged as one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalSummary {
    /// Refusals by reason.
    pub counts: BTreeMap<&'static str, u64>,
    /// Length of the interval they were counted over.
    pub window_ms: u64,
}

impl RefusalSummary {
    /// Every refusal in the summary.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

impl fmt::Display for RefusalSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reasons: Vec<String> = self.counts.iter().map(|(reason, count)| format!("{reason}: {count}")).collect();
        let seconds = self.window_ms as f64 / 1000.0;
        write!(f, "refused {} handshakes ({}) in the last {seconds:.0} s", self.total(), reasons.join(", "))
    }
}

/// Rate limiter of refusal warnings: the first is logged, the rest summarized once per interval.
#[derive(Debug, Clone)]
pub struct RefusalLog {
    interval_ms: u64,
    /// Start of the current interval; `None` while quiet (the next refusal is logged at once).
    window: Option<Millis>,
    counts: BTreeMap<&'static str, u64>,
}

impl RefusalLog {
    /// A log that writes at most one summary per `interval_ms`.
    pub fn new(interval_ms: u64) -> RefusalLog {
        RefusalLog { interval_ms, window: None, counts: BTreeMap::new() }
    }

    /// Records a refusal at `now`; returns whether to log it in full at once (the first after a quiet
    /// interval). Otherwise it is counted for the next summary. Call [`poll_summary`](Self::poll_summary)
    /// first so an interval that has ended is reported before this refusal opens the next one.
    pub fn on_refusal(&mut self, now: Millis, reason: &'static str) -> bool {
        let quiet = match self.window {
            None => true,
            Some(start) => now.since(start) >= self.interval_ms && self.counts.is_empty(),
        };
        if quiet {
            self.window = Some(now);
            return true;
        }
        *self.counts.entry(reason).or_insert(0) += 1;
        false
    }

    /// When the current interval ends, if one is open.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.window.map(|start| start.plus(self.interval_ms))
    }

    /// The summary of an interval that has ended by `now`, if it counted anything. An interval with
    /// nothing counted ends quietly, so the next refusal is logged at once.
    pub fn poll_summary(&mut self, now: Millis) -> Option<RefusalSummary> {
        let start = self.window?;
        if now.since(start) < self.interval_ms {
            return None;
        }
        if self.counts.is_empty() {
            self.window = None;
            return None;
        }
        self.window = Some(now);
        Some(RefusalSummary { counts: std::mem::take(&mut self.counts), window_ms: now.since(start) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn one_source_cannot_take_every_slot() {
        let mut slots = HandshakeSlots::new(4, 2);
        assert_eq!(slots.try_admit(ip(2)), Ok(()));
        assert_eq!(slots.try_admit(ip(2)), Ok(()));
        assert_eq!(slots.try_admit(ip(2)), Err(SlotRefusal::SourceBusy));
        assert_eq!(slots.try_admit(ip(1)), Ok(()));
        assert_eq!(slots.try_admit(ip(3)), Ok(()));
        assert_eq!(slots.try_admit(ip(4)), Err(SlotRefusal::Busy));
        assert_eq!(slots.in_flight(), 4);
        slots.release(ip(2));
        assert_eq!(slots.try_admit(ip(4)), Ok(()));
        for source in [ip(2), ip(1), ip(3), ip(4)] {
            slots.release(source);
        }
        assert_eq!((slots.in_flight(), slots.per_source.len()), (0, 0));
    }

    #[test]
    fn the_first_refusal_is_logged_and_the_rest_summarized_once_per_interval() {
        let mut log = RefusalLog::new(10_000);
        assert_eq!(log.poll_summary(Millis(0)), None);
        assert!(log.on_refusal(Millis(5), "tls"), "the first refusal is logged at once");
        for at in 6..=965 {
            let reason = if at % 3 == 0 { "busy" } else { "tls" };
            assert!(!log.on_refusal(Millis(at), reason), "later refusals are counted, not logged");
        }
        assert_eq!(log.next_deadline(), Some(Millis(10_005)));
        assert_eq!(log.poll_summary(Millis(10_004)), None);
        let summary = log.poll_summary(Millis(10_005)).expect("the interval ended");
        assert_eq!(summary.counts, BTreeMap::from([("busy", 320), ("tls", 640)]));
        assert_eq!(summary.to_string(), "refused 960 handshakes (busy: 320, tls: 640) in the last 10 s");
        // A refusal in the next interval is counted; the summary comes when that interval ends.
        assert!(!log.on_refusal(Millis(12_000), "source_busy"));
        let summary = log.poll_summary(Millis(20_005)).expect("second interval");
        assert_eq!((summary.total(), summary.window_ms), (1, 10_000));
        // A quiet interval ends silently; the next refusal is logged at once again.
        assert_eq!(log.poll_summary(Millis(30_005)), None);
        assert_eq!(log.next_deadline(), None);
        assert!(log.on_refusal(Millis(40_000), "tls"));
    }

    #[test]
    fn a_refusal_after_an_unpolled_quiet_interval_is_logged_at_once() {
        let mut log = RefusalLog::new(1_000);
        assert!(log.on_refusal(Millis(0), "tls"));
        assert!(log.on_refusal(Millis(5_000), "busy"), "nothing was counted in between");
        assert!(!log.on_refusal(Millis(5_001), "busy"));
    }
}
