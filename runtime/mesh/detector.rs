//! The failure detector: a deterministic state machine fed with "heard from peer" and clock ticks.
//!
//! It owns each peer's liveness and nothing else: it sends no heartbeat and reads no clock. The shell
//! calls [`FailureDetector::on_heard`] when a control frame arrives, [`FailureDetector::on_tick`] at
//! [`FailureDetector::next_deadline`], and publishes the [`PeerEvent`]s pushed to `out`.
//!
//! Invariant: events for one peer alternate Up, Down, Up, ...; the first event for a peer is Up.
//!
//! A pause of this node itself (starved of CPU, stopped) is not counted against its peers: the shell
//! ticks at least once a heartbeat interval, so a tick that comes [`PAUSE_INTERVALS`] intervals late
//! means frames may have arrived meanwhile unread, and every live peer's silence is credited with the
//! lateness (a peer that really died is declared down that much later; one that kept talking is heard
//! first).

use std::collections::BTreeMap;

use crate::ids::{Millis, NodeId};
use crate::limits::{HEARTBEAT_INTERVAL_MS_MAX, HEARTBEAT_INTERVAL_MS_MIN, PEER_SILENCE_MS_MAX, SILENCE_INTERVALS_MIN};

/// Lateness of a tick, in heartbeat intervals beyond the one expected, from which it is taken for a
/// pause of this node: ordinary scheduling delays stay well under it, so they never postpone a down.
pub const PAUSE_INTERVALS: u64 = 2;

/// Timing of heartbeats and of the down verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DetectorConfig {
    /// How often a node pings each connected peer.
    pub heartbeat_interval_ms: u64,
    /// Silence after which a peer is declared down.
    pub peer_silence_max_ms: u64,
}

impl Default for DetectorConfig {
    /// 40 ms heartbeats and 200 ms of silence: a kill -9'd peer is down 160–200 ms after its death
    /// (its last frame came at most one interval before), and five consecutive heartbeats must be
    /// lost for a false down. Chosen by measurement (`cargo bench --bench grid -- failover` and
    /// `-- soak`): a killed worker's running work started elsewhere 190 ms after the kill (p50), and
    /// a 10-minute soak with the machine's cores busy (load average 9.5) took no live node for dead.
    /// 150 ms restarts work 50 ms sooner but, before pauses were credited, took nodes starved of CPU
    /// for dead in a soak at load 12: not the default until a 10-minute soak says otherwise.
    fn default() -> Self {
        DetectorConfig { heartbeat_interval_ms: 40, peer_silence_max_ms: 200 }
    }
}

/// Why a detector configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectorConfigError {
    /// The interval is below [`HEARTBEAT_INTERVAL_MS_MIN`].
    #[error("heartbeat interval {0} ms is below the minimum of {HEARTBEAT_INTERVAL_MS_MIN} ms")]
    IntervalTooShort(u64),
    /// The interval is above [`HEARTBEAT_INTERVAL_MS_MAX`].
    #[error("heartbeat interval {0} ms is above the maximum of {HEARTBEAT_INTERVAL_MS_MAX} ms")]
    IntervalTooLong(u64),
    /// The silence is above [`PEER_SILENCE_MS_MAX`].
    #[error("peer silence {0} ms is above the maximum of {PEER_SILENCE_MS_MAX} ms")]
    SilenceTooLong(u64),
    /// The silence allows fewer than [`SILENCE_INTERVALS_MIN`] heartbeats.
    #[error("peer silence {silence_ms} ms must be at least {SILENCE_INTERVALS_MIN} heartbeat intervals ({interval_ms} ms each)")]
    SilenceTooShort {
        /// Configured silence.
        silence_ms: u64,
        /// Configured interval.
        interval_ms: u64,
    },
}

impl DetectorConfigError {
    /// The setting at fault, as its flag is spelled.
    pub fn setting(&self) -> &'static str {
        match self {
            DetectorConfigError::IntervalTooShort(_) | DetectorConfigError::IntervalTooLong(_) => {
                "heartbeat-interval-ms"
            }
            DetectorConfigError::SilenceTooLong(_) | DetectorConfigError::SilenceTooShort { .. } => {
                "peer-silence-max-ms"
            }
        }
    }
}

impl DetectorConfig {
    /// The defaults with `heartbeat_interval_ms` instead, the silence raised to keep the default's
    /// number of heartbeats per silence if the default silence would allow fewer: a node given only
    /// a slower heartbeat (`--heartbeat-interval-ms 100`, valid with the earlier 500 ms default)
    /// still starts, and still needs as many heartbeats lost for a false down.
    pub fn with_heartbeat(heartbeat_interval_ms: u64) -> Self {
        let defaults = DetectorConfig::default();
        let per_silence = defaults.peer_silence_max_ms / defaults.heartbeat_interval_ms;
        let silence = per_silence.saturating_mul(heartbeat_interval_ms).min(PEER_SILENCE_MS_MAX);
        DetectorConfig { heartbeat_interval_ms, peer_silence_max_ms: defaults.peer_silence_max_ms.max(silence) }
    }

    /// Checks the bounds that keep the detector from flapping.
    ///
    /// # Errors
    /// A [`DetectorConfigError`] naming the bad value.
    pub fn validate(&self) -> Result<(), DetectorConfigError> {
        if self.heartbeat_interval_ms < HEARTBEAT_INTERVAL_MS_MIN {
            return Err(DetectorConfigError::IntervalTooShort(self.heartbeat_interval_ms));
        }
        if self.heartbeat_interval_ms > HEARTBEAT_INTERVAL_MS_MAX {
            return Err(DetectorConfigError::IntervalTooLong(self.heartbeat_interval_ms));
        }
        if self.peer_silence_max_ms > PEER_SILENCE_MS_MAX {
            return Err(DetectorConfigError::SilenceTooLong(self.peer_silence_max_ms));
        }
        // Checked although the bounds above keep it small: a relation between settings never wraps.
        let silence_min = SILENCE_INTERVALS_MIN.checked_mul(self.heartbeat_interval_ms);
        if silence_min.is_none_or(|silence_min| self.peer_silence_max_ms < silence_min) {
            return Err(DetectorConfigError::SilenceTooShort {
                silence_ms: self.peer_silence_max_ms,
                interval_ms: self.heartbeat_interval_ms,
            });
        }
        Ok(())
    }
}

/// A change of a peer's liveness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerEvent {
    /// The peer was heard from after being down or never heard.
    Up(NodeId),
    /// The peer fell silent for longer than the configured maximum, or said goodbye.
    Down(NodeId),
}

impl PeerEvent {
    /// The peer the event is about.
    pub fn peer(&self) -> NodeId {
        match *self {
            PeerEvent::Up(peer) | PeerEvent::Down(peer) => peer,
        }
    }
}

/// What the detector knows of one peer, for status views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerLiveness {
    /// Whether the peer is currently considered up.
    pub alive: bool,
    /// When it was last heard from, if ever.
    pub last_heard: Option<Millis>,
}

/// Liveness of every peer, decided from what was heard and when.
#[derive(Debug, Clone)]
pub struct FailureDetector {
    config: DetectorConfig,
    peers: BTreeMap<NodeId, PeerLiveness>,
    /// The latest tick, to tell a pause of this node from silence of its peers.
    last_tick: Option<Millis>,
}

impl FailureDetector {
    /// A detector watching `peers`, all initially down and never heard.
    pub fn new(config: DetectorConfig, peers: impl IntoIterator<Item = NodeId>) -> Self {
        let peers = peers.into_iter().map(|peer| (peer, PeerLiveness { alive: false, last_heard: None })).collect();
        FailureDetector { config, peers, last_tick: None }
    }

    /// The configuration in force.
    pub fn config(&self) -> DetectorConfig {
        self.config
    }

    /// Starts watching `peer` (a node that joined), initially down.
    pub fn on_peer_added(&mut self, peer: NodeId) {
        self.peers.entry(peer).or_insert(PeerLiveness { alive: false, last_heard: None });
    }

    /// Stops watching `peer`; a live peer gets a final Down.
    pub fn on_peer_removed(&mut self, peer: NodeId, out: &mut Vec<PeerEvent>) {
        if let Some(liveness) = self.peers.remove(&peer) {
            if liveness.alive {
                out.push(PeerEvent::Down(peer));
            }
        }
    }

    /// Records a frame from `peer` at `now`. Frames from unwatched peers are ignored.
    pub fn on_heard(&mut self, now: Millis, peer: NodeId, out: &mut Vec<PeerEvent>) {
        let Some(liveness) = self.peers.get_mut(&peer) else { return };
        liveness.last_heard = Some(liveness.last_heard.map_or(now, |seen| seen.max(now)));
        if !liveness.alive {
            liveness.alive = true;
            out.push(PeerEvent::Up(peer));
        }
    }

    /// Records that `peer` closed its connection on purpose: it is down now, without waiting out
    /// the silence.
    pub fn on_departed(&mut self, peer: NodeId, out: &mut Vec<PeerEvent>) {
        if let Some(liveness) = self.peers.get_mut(&peer) {
            if liveness.alive {
                liveness.alive = false;
                out.push(PeerEvent::Down(peer));
            }
        }
    }

    /// Declares down every live peer silent for longer than the configured maximum at `now`, not
    /// counting a pause of this node (a tick more than [`PAUSE_INTERVALS`] intervals late).
    pub fn on_tick(&mut self, now: Millis, out: &mut Vec<PeerEvent>) {
        self.credit_pause(now);
        let silence_max = self.config.peer_silence_max_ms;
        for (&peer, liveness) in &mut self.peers {
            let silent_for = liveness.last_heard.map_or(u64::MAX, |seen| now.since(seen));
            if liveness.alive && silent_for > silence_max {
                liveness.alive = false;
                out.push(PeerEvent::Down(peer));
            }
        }
    }

    /// Moves every live peer's last-heard time forward by how late this tick is, if it is late
    /// enough to be a pause of this node; never past `now`.
    fn credit_pause(&mut self, now: Millis) {
        let interval = self.config.heartbeat_interval_ms;
        let late = self.last_tick.map_or(0, |previous| now.since(previous).saturating_sub(interval));
        self.last_tick = Some(self.last_tick.map_or(now, |previous| previous.max(now)));
        if late <= PAUSE_INTERVALS.saturating_mul(interval) {
            return;
        }
        for liveness in self.peers.values_mut().filter(|liveness| liveness.alive) {
            if let Some(seen) = liveness.last_heard.as_mut() {
                *seen = seen.plus(late).min(now);
            }
        }
    }

    /// The earliest time at which [`Self::on_tick`] could declare a peer down, if any peer is up.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.peers
            .values()
            .filter(|liveness| liveness.alive)
            .filter_map(|liveness| liveness.last_heard)
            .map(|seen| seen.plus(self.config.peer_silence_max_ms + 1))
            .min()
    }

    /// Every watched peer and its liveness, by id.
    pub fn peers(&self) -> impl Iterator<Item = (NodeId, PeerLiveness)> + '_ {
        self.peers.iter().map(|(&peer, &liveness)| (peer, liveness))
    }

    /// Whether `peer` is currently considered up.
    pub fn is_alive(&self, peer: NodeId) -> bool {
        self.peers.get(&peer).is_some_and(|liveness| liveness.alive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = NodeId(1);
    const B: NodeId = NodeId(2);

    fn detector() -> FailureDetector {
        FailureDetector::new(DetectorConfig { heartbeat_interval_ms: 100, peer_silence_max_ms: 500 }, [A, B])
    }

    #[test]
    fn out_of_range_timings_are_refused_without_wrapping() {
        let config =
            |heartbeat_interval_ms, peer_silence_max_ms| DetectorConfig { heartbeat_interval_ms, peer_silence_max_ms };
        // 3 × 6148914691236517206 wraps to 2 in u64: once accepted, now refused.
        let wrapping = config(6_148_914_691_236_517_206, 500).validate().expect_err("refused");
        assert_eq!(wrapping, DetectorConfigError::IntervalTooLong(6_148_914_691_236_517_206));
        assert_eq!(wrapping.setting(), "heartbeat-interval-ms");
        let silence = config(100, u64::MAX).validate().expect_err("refused");
        assert_eq!(silence.setting(), "peer-silence-max-ms");
        assert_eq!(silence, DetectorConfigError::SilenceTooLong(u64::MAX));
        assert!(config(HEARTBEAT_INTERVAL_MS_MAX, PEER_SILENCE_MS_MAX).validate().is_ok());
        assert_eq!(config(9, 500).validate().map_err(|error| error.setting()), Err("heartbeat-interval-ms"));
    }

    #[test]
    fn first_frame_brings_a_peer_up_once() {
        let mut detector = detector();
        let mut out = Vec::new();
        detector.on_heard(Millis(10), A, &mut out);
        detector.on_heard(Millis(20), A, &mut out);
        assert_eq!(out, vec![PeerEvent::Up(A)]);
        assert!(detector.is_alive(A));
        assert!(!detector.is_alive(B));
    }

    #[test]
    fn silence_longer_than_the_maximum_means_down() {
        let mut detector = detector();
        let mut out = Vec::new();
        detector.on_heard(Millis(0), A, &mut out);
        out.clear();
        detector.on_tick(Millis(500), &mut out);
        assert!(out.is_empty(), "exactly the maximum silence is still alive");
        detector.on_tick(Millis(501), &mut out);
        assert_eq!(out, vec![PeerEvent::Down(A)]);
        detector.on_tick(Millis(900), &mut out);
        assert_eq!(out, vec![PeerEvent::Down(A)], "down is reported once");
    }

    #[test]
    fn regular_heartbeats_never_cause_a_down() {
        let mut detector = detector();
        let mut out = Vec::new();
        for now in (0..10_000).step_by(100) {
            detector.on_heard(Millis(now), A, &mut out);
            detector.on_tick(Millis(now + 50), &mut out);
        }
        assert_eq!(out, vec![PeerEvent::Up(A)]);
    }

    #[test]
    fn a_peer_comes_back_after_being_down() {
        let mut detector = detector();
        let mut out = Vec::new();
        detector.on_heard(Millis(0), A, &mut out);
        detector.on_tick(Millis(600), &mut out);
        detector.on_heard(Millis(700), A, &mut out);
        assert_eq!(out, vec![PeerEvent::Up(A), PeerEvent::Down(A), PeerEvent::Up(A)]);
    }

    #[test]
    fn next_deadline_is_the_earliest_possible_down() {
        let mut detector = detector();
        let mut out = Vec::new();
        assert_eq!(detector.next_deadline(), None, "nobody up, nothing to check");
        detector.on_heard(Millis(100), A, &mut out);
        detector.on_heard(Millis(40), B, &mut out);
        assert_eq!(detector.next_deadline(), Some(Millis(541)));
        detector.on_tick(Millis(541), &mut out);
        assert_eq!(out.last(), Some(&PeerEvent::Down(B)));
        assert_eq!(detector.next_deadline(), Some(Millis(601)));
    }

    #[test]
    fn goodbye_is_down_at_once_and_unknown_peers_are_ignored() {
        let mut detector = detector();
        let mut out = Vec::new();
        detector.on_heard(Millis(0), NodeId(99), &mut out);
        assert!(out.is_empty());
        detector.on_heard(Millis(0), A, &mut out);
        detector.on_departed(A, &mut out);
        detector.on_departed(A, &mut out);
        assert_eq!(out, vec![PeerEvent::Up(A), PeerEvent::Down(A)]);
    }

    #[test]
    fn out_of_order_observations_do_not_move_last_heard_back() {
        let mut detector = detector();
        let mut out = Vec::new();
        detector.on_heard(Millis(400), A, &mut out);
        detector.on_heard(Millis(100), A, &mut out);
        detector.on_tick(Millis(700), &mut out);
        assert!(detector.is_alive(A));
    }

    #[test]
    fn config_bounds_are_checked() {
        assert!(DetectorConfig::default().validate().is_ok());
        assert_eq!(
            DetectorConfig { heartbeat_interval_ms: 5, peer_silence_max_ms: 500 }.validate(),
            Err(DetectorConfigError::IntervalTooShort(5))
        );
        assert!(DetectorConfig { heartbeat_interval_ms: 100, peer_silence_max_ms: 250 }.validate().is_err());
    }

    #[test]
    fn a_pause_of_this_node_is_not_counted_against_its_peers() {
        let mut detector = detector();
        let mut out = Vec::new();
        detector.on_heard(Millis(0), A, &mut out);
        detector.on_heard(Millis(0), B, &mut out);
        detector.on_tick(Millis(100), &mut out);
        // This node stood still for 900 ms: its first tick after is 800 ms late; B's frames were
        // waiting unread and are heard right after the tick, A has really gone quiet.
        detector.on_tick(Millis(1_000), &mut out);
        assert_eq!(out, vec![PeerEvent::Up(A), PeerEvent::Up(B)], "no down on the tick after a pause");
        detector.on_heard(Millis(1_001), B, &mut out);
        // A is down once silent for 500 ms not counting the 800 ms pause; B stays up.
        detector.on_tick(Millis(1_100), &mut out);
        detector.on_tick(Millis(1_200), &mut out);
        detector.on_tick(Millis(1_300), &mut out);
        assert_eq!(out.len(), 2, "{out:?}");
        detector.on_tick(Millis(1_301), &mut out);
        assert_eq!(out, vec![PeerEvent::Up(A), PeerEvent::Up(B), PeerEvent::Down(A)]);
    }

    #[test]
    fn a_tick_late_by_less_than_the_pause_bound_postpones_nothing() {
        let mut detector = detector();
        let mut out = Vec::new();
        detector.on_heard(Millis(0), A, &mut out);
        detector.on_tick(Millis(100), &mut out);
        // 200 ms late, exactly the bound: ordinary lateness, A's silence counts in full.
        detector.on_tick(Millis(400), &mut out);
        detector.on_tick(Millis(501), &mut out);
        assert_eq!(out, vec![PeerEvent::Up(A), PeerEvent::Down(A)]);
    }

    #[test]
    fn a_given_heartbeat_keeps_the_default_heartbeats_per_silence() {
        let defaults = DetectorConfig::default();
        assert_eq!(DetectorConfig::with_heartbeat(defaults.heartbeat_interval_ms), defaults);
        // The earlier default pair comes back from its heartbeat alone.
        assert_eq!(
            DetectorConfig::with_heartbeat(100),
            DetectorConfig { heartbeat_interval_ms: 100, peer_silence_max_ms: 500 }
        );
        assert_eq!(DetectorConfig::with_heartbeat(10).peer_silence_max_ms, defaults.peer_silence_max_ms);
        assert!(DetectorConfig::with_heartbeat(HEARTBEAT_INTERVAL_MS_MAX).validate().is_ok());
    }

    #[test]
    fn removing_a_live_peer_reports_it_down() {
        let mut detector = detector();
        let mut out = Vec::new();
        detector.on_heard(Millis(0), A, &mut out);
        detector.on_peer_removed(A, &mut out);
        detector.on_peer_added(NodeId(3));
        assert_eq!(out, vec![PeerEvent::Up(A), PeerEvent::Down(A)]);
        assert_eq!(detector.peers().map(|(peer, _)| peer).collect::<Vec<_>>(), vec![B, NodeId(3)]);
    }
}
