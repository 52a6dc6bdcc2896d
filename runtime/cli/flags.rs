//! The command line's typed flag values: every enumerated choice as a clap [`ValueEnum`] (so `--help`
//! lists the values and a wrong one is a usage error, exit 2), and `--since`/`--until` times given
//! as a duration back from now (`90s`, `15m`, `1h30m`, `7d`) or an RFC 3339 time.
//!
//! Each choice maps onto the core type it names; the core types themselves know nothing of clap.
//! Nothing here reads a clock: a [`Since`] becomes Unix milliseconds against a "now" the caller
//! passes in.

use clap::ValueEnum;

use crate::consensus::Consistency;
use crate::credentials::Role;
use crate::grid::schedule::{days_from_civil, Misfire};
use crate::grid::task::TaskState;
use crate::grid::Strategy;

/// A task state, for `tasks --state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum StateArg {
    /// Waiting to be placed.
    Pending,
    /// Given to a node, not yet started.
    Assigned,
    /// Running on a node.
    Running,
    /// Finished with a result.
    Succeeded,
    /// Every attempt failed.
    Failed,
    /// The last attempt ran out of time.
    #[value(alias = "timed-out")]
    TimedOut,
    /// Cancelled before finishing.
    Cancelled,
}

impl From<StateArg> for TaskState {
    fn from(state: StateArg) -> TaskState {
        match state {
            StateArg::Pending => TaskState::Pending,
            StateArg::Assigned => TaskState::Assigned,
            StateArg::Running => TaskState::Running,
            StateArg::Succeeded => TaskState::Succeeded,
            StateArg::Failed => TaskState::Failed,
            StateArg::TimedOut => TaskState::TimedOut,
            StateArg::Cancelled => TaskState::Cancelled,
        }
    }
}

/// A placement strategy, for `submit --strategy` and `node --placement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum StrategyArg {
    /// Fewest running attempts per slot.
    #[value(alias = "least-loaded")]
    LeastLoaded,
    /// Each eligible node in turn.
    #[value(alias = "round-robin")]
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// At random in proportion to each node's weight.
    Weighted,
    /// The same shard key on the same node (rendezvous hashing).
    #[value(alias = "consistent-hash")]
    ConsistentHash,
}

impl From<StrategyArg> for Strategy {
    fn from(strategy: StrategyArg) -> Strategy {
        match strategy {
            StrategyArg::LeastLoaded => Strategy::LeastLoaded,
            StrategyArg::RoundRobin => Strategy::RoundRobin,
            StrategyArg::Random => Strategy::Random,
            StrategyArg::Weighted => Strategy::Weighted,
            StrategyArg::ConsistentHash => Strategy::ConsistentHash,
        }
    }
}

impl StrategyArg {
    /// The name a config file and the API use (`least_loaded`).
    pub fn name(self) -> &'static str {
        match self {
            StrategyArg::LeastLoaded => "least_loaded",
            StrategyArg::RoundRobin => "round_robin",
            StrategyArg::Random => "random",
            StrategyArg::Weighted => "weighted",
            StrategyArg::ConsistentHash => "consistent_hash",
        }
    }
}

/// A role a token or client certificate can be issued with, for `certs --role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Status, task queries, registry reads, waits.
    Reader,
    /// A reader that may also submit, cancel and schedule tasks.
    Submitter,
    /// Everything: drain, membership, registry writes, revocations, the audit log.
    Operator,
    /// Only `/metrics`.
    Metrics,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Reader => Role::Reader,
            RoleArg::Submitter => Role::Submitter,
            RoleArg::Operator => Role::Operator,
            RoleArg::Metrics => Role::Metrics,
        }
    }
}

/// What a registry read waits for, for `registry --consistency`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConsistencyArg {
    /// Behind a barrier: sees every write acknowledged before the read began.
    Linearizable,
    /// This node's state as it is (faster, may lag).
    Local,
}

impl From<ConsistencyArg> for Consistency {
    fn from(consistency: ConsistencyArg) -> Consistency {
        match consistency {
            ConsistencyArg::Linearizable => Consistency::Linearizable,
            ConsistencyArg::Local => Consistency::Local,
        }
    }
}

/// What a job does with fire times missed while no leader could fire them, for `schedule --misfire`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum MisfireArg {
    /// Drop them.
    Skip,
    /// Fire once to catch up.
    #[value(alias = "run-once")]
    RunOnce,
}

impl From<MisfireArg> for Misfire {
    fn from(misfire: MisfireArg) -> Misfire {
        match misfire {
            MisfireArg::Skip => Misfire::Skip,
            MisfireArg::RunOnce => Misfire::RunOnce,
        }
    }
}

/// A point in time given on the command line: a duration back from now, or an absolute time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This many milliseconds before now.
    Ago(u64),
    /// This Unix time in milliseconds.
    At(u64),
}

impl Since {
    /// The time as Unix milliseconds, `now_ms` being now.
    pub fn unix_ms(self, now_ms: u64) -> u64 {
        match self {
            Since::Ago(ms) => now_ms.saturating_sub(ms),
            Since::At(ms) => ms,
        }
    }
}

/// Parses a `--since` value (clap's value parser: an error is a usage error, exit 2): a duration
/// ([`parse_duration`]) or an RFC 3339 time (`2026-11-30T18:00:00Z`).
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_since(text: &str) -> Result<Since, String> {
    let text = text.trim();
    if let Some(ms) = parse_rfc3339(text) {
        return Ok(Since::At(ms));
    }
    parse_duration(text).map(Since::Ago).map_err(|_| {
        format!("{text:?} is neither a duration (a number and a unit: 90s, 15m, 1h30m, 7d) nor an RFC 3339 time")
    })
}

/// A duration: one or more numbers each followed by a unit, `ms`, `s`, `m`, `h` or `d`, largest first
/// (`90s`, `15m`, `1h30m`, `7d`, `250ms`), as milliseconds.
///
/// # Errors
/// A message naming the accepted units; also for a value past `u64` milliseconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let bad = || format!("bad duration {text:?}: give a number and a unit (ms, s, m, h, d), e.g. 90s, 15m, 1h30m, 7d");
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let (mut total, mut last_unit_ms) = (0u64, u64::MAX);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let amount: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit_ms = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        // Each unit smaller than the one before: `1h30m`, never `30m1h` or `1h1h`.
        if unit_ms >= last_unit_ms {
            return Err(bad());
        }
        last_unit_ms = unit_ms;
        total = amount.checked_mul(unit_ms).and_then(|ms| total.checked_add(ms)).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` as Unix milliseconds; `None` for anything else (and
/// for times before 1970).
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let number = |part: &str| -> Option<i64> {
        (!part.is_empty() && part.len() <= 9 && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut fields = date.split('-');
    let (year, month, day) = (number(fields.next()?)?, number(fields.next()?)?, number(fields.next()?)?);
    if fields.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let (clock, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut fields = clock.split(':');
    let (hour, minute, second) = (number(fields.next()?)?, number(fields.next()?)?, number(fields.next()?)?);
    if fields.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let millis = if fraction.is_empty() { 0 } else { number(fraction.get(..3).unwrap_or(&format!("{fraction:0<3}")))? };
    let offset_minutes = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (hours, minutes) = zone[1..].split_once(':')?;
            sign * (number(hours)? * 60 + number(minutes)?)
        }
    };
    let days = days_from_civil(year, u32::try_from(month).ok()?, u32::try_from(day).ok()?);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(seconds.checked_mul(1_000)?.checked_add(millis)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::rfc3339;

    #[test]
    fn durations_take_units_largest_first() {
        let cases = [
            ("0s", 0),
            ("250ms", 250),
            ("90s", 90_000),
            ("15m", 900_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("7d", 604_800_000),
            ("1d2h3m4s5ms", 93_784_005),
            (" 2h ", 7_200_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration(text), Ok(ms), "{text}");
        }
        for bad in
            ["", "1", "h", "1y", "1H", "-1h", "1.5h", "30m1h", "1h1h", "1 h", "99999999999999999999s", "213503982335d"]
        {
            let error = parse_duration(bad).expect_err(bad);
            assert!(error.contains("ms, s, m, h, d"), "{error}");
        }
    }

    #[test]
    fn since_takes_durations_and_rfc3339_times() {
        let now = 1_796_000_000_000;
        let at = |text: &str| parse_since(text).map(|since| since.unix_ms(now));
        assert_eq!(at("90s"), Ok(now - 90_000));
        assert_eq!(at("1h"), Ok(now - 3_600_000));
        assert_eq!(at("7d"), Ok(now - 7 * 86_400_000));
        assert_eq!(at("100000000d"), Ok(0), "saturates at 1970");
        assert_eq!(at("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(at("2026-11-30T18:00:00Z"), Ok(1_796_061_600_000));
        assert_eq!(at("2026-11-30T19:00:00.250+01:00"), Ok(1_796_061_600_250));
        assert_eq!(at("2026-11-30T18:00:00.123456789Z"), Ok(1_796_061_600_123));
        for bad in ["", "1y", "h", "2026-13-01T00:00:00Z", "2026-11-30", "2026-11-30T25:00:00Z", "yesterday"] {
            let error = parse_since(bad).expect_err(bad);
            assert!(error.contains("RFC 3339") && error.contains("1h30m"), "{error}");
        }
    }

    #[test]
    fn printed_times_parse_back() {
        for ms in [0, 1_796_061_600_250, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse_since(&rfc3339(ms)), Ok(Since::At(ms)), "{}", rfc3339(ms));
        }
    }

    #[test]
    fn choices_use_the_api_names() {
        use clap::ValueEnum;
        let names = |values: &[StateArg]| -> Vec<String> {
            values
                .iter()
                .filter_map(|value| value.to_possible_value())
                .map(|value| value.get_name().to_string())
                .collect()
        };
        assert_eq!(
            names(StateArg::value_variants()),
            ["pending", "assigned", "running", "succeeded", "failed", "timed_out", "cancelled"]
        );
        for state in StateArg::value_variants() {
            let name = state.to_possible_value().expect("named").get_name().to_string();
            assert_eq!(crate::api::grid::state_name(TaskState::from(*state)), name);
        }
        for strategy in StrategyArg::value_variants() {
            assert_eq!(crate::node::config::parse_strategy(strategy.name()), Ok(Strategy::from(*strategy)));
            assert_eq!(StrategyArg::from_str(&strategy.name().replace('_', "-"), false), Ok(*strategy));
        }
        for role in RoleArg::value_variants() {
            let name = role.to_possible_value().expect("named").get_name().to_string();
            assert_eq!(Role::parse_issuable(&name), Ok(Role::from(*role)));
        }
        assert_eq!(MisfireArg::from_str("run_once", false).map(Misfire::from), Ok(Misfire::RunOnce));
    }
}
