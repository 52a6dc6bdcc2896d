//! Time zones for cron schedules: [`Zone`] (UTC, or an IANA zone from the database compiled into this
//! binary) and the wall-clock search behind [`Cadence::next_after_in`](super::Cadence::next_after_in).
//!
//! Core: no I/O, no clock. The IANA database is the copy embedded in the binary (jiff's bundled tzdb, read
//! through `TimeZoneDatabase::bundled()`, never the host's `/usr/share/zoneinfo` or `TZDIR`), so one
//! binary computes the same fire times on every machine, and a fresh machine without zone files computes
//! them too. Only the leader (deciding a due job) and the node that takes a schedule or a resume evaluate a
//! zone; what they compute is committed as numbers, which replicas apply without reading zone data. Two
//! builds with different database releases may disagree about a future rule change, and that is why the
//! numbers, not the rules, are replicated.
//!
//! Daylight saving time. A cron expression in a zone names wall-clock times, and a job fires at the first
//! instant the zone's wall clock reaches a matching time:
//! - A matching time that does not exist (a spring-forward gap: 02:30 in America/New_York on 2025-03-09)
//!   fires at the first instant after the gap (03:00 EDT, the transition itself). Several matching times
//!   in one gap (`*/15 2 * * *`) fire once there.
//! - A matching time that happens twice (a fall-back fold: 01:30 in America/New_York on 2025-11-02) fires
//!   once, at its first occurrence (01:30 EDT). The repeated hour fires nothing: the wall clock reads no
//!   time it had not read before.
//!
//! Invariant: fire times strictly increase and none is repeated: the search looks for matching times past
//! the highest wall-clock reading so far (which, inside a fold, is the one before the clocks went back).

use jiff::tz::{AmbiguousOffset, Offset, TimeZone, TimeZoneDatabase};
use jiff::Timestamp;

use super::{CronExpr, ScheduleError};

/// The longest zone name accepted. IANA names are at most about 30 bytes (`America/Argentina/ComodRivadavia`
/// has 32); the bound keeps a hostile name out of the log and the job table.
pub const ZONE_NAME_BYTES_MAX: usize = 64;

/// How far back a search looks for a fall-back transition whose repeated wall-clock times may still be
/// repeating. The largest offset change on record is a day (Samoa skipped 2011-12-30); two days covers it.
const FOLD_LOOKBACK_MS: i64 = 2 * 86_400_000;

/// Transitions looked at within [`FOLD_LOOKBACK_MS`]: a zone changes its offset at most a few times in
/// two days, and the bound keeps one search cheap whatever the data says.
const FOLD_TRANSITIONS_MAX: usize = 8;

/// The zone a cron expression is read in: UTC (computed with the calendar arithmetic of `schedule.rs`,
/// no zone data), or an IANA zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// `UTC`, or the zone's canonical IANA name (`America/New_York`, whatever case it was given in).
    name: String,
    /// `None` for UTC.
    tz: Option<TimeZone>,
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl Eq for Zone {}

impl Zone {
    /// The name UTC is shown and stored as.
    pub const UTC: &'static str = "UTC";

    /// UTC.
    pub fn utc() -> Zone {
        Zone { name: Zone::UTC.to_owned(), tz: None }
    }

    /// The zone named `name`: `UTC` (any case), or an IANA name the embedded database knows (any case).
    ///
    /// # Errors
    /// [`ScheduleError::UnknownZone`] for an empty, overlong or unknown name.
    pub fn parse(name: &str) -> Result<Zone, ScheduleError> {
        let name = name.trim();
        let unknown = || ScheduleError::UnknownZone { name: name.chars().take(ZONE_NAME_BYTES_MAX).collect() };
        if name.is_empty() || name.len() > ZONE_NAME_BYTES_MAX {
            return Err(unknown());
        }
        if name.eq_ignore_ascii_case(Zone::UTC) {
            return Ok(Zone::utc());
        }
        let tz = TimeZoneDatabase::bundled().get(name).map_err(|_| unknown())?;
        let canonical = tz.iana_name().unwrap_or(name).to_owned();
        Ok(Zone { name: canonical, tz: Some(tz) })
    }

    /// `UTC` or the canonical IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is UTC.
    pub fn is_utc(&self) -> bool {
        self.tz.is_none()
    }

    /// The first fire time of `expr` strictly after `after_ms` (Unix ms), read in this zone; None if there
    /// is none within the search's horizon or it does not fit.
    pub(super) fn cron_next_after(&self, expr: &CronExpr, after_ms: u64) -> Option<u64> {
        let Some(tz) = &self.tz else { return expr.next_after(after_ms) };
        let high = wall_high_water(tz, i64::try_from(after_ms).ok()?)?;
        // Wall-clock times are searched as if they were UTC instants: the same calendar, shifted.
        let local = expr.next_after(u64::try_from(high).unwrap_or(0))?;
        let fire = first_instant_reading(tz, i64::try_from(local).ok()?)?;
        u64::try_from(fire).ok()
    }
}

fn offset_ms(offset: Offset) -> i64 {
    i64::from(offset.seconds()) * 1000
}

/// The zone's wall-clock reading (ms since the local epoch) at the instant `at_ms`.
fn wall_at(tz: &TimeZone, at_ms: i64) -> Option<i64> {
    let offset = tz.to_offset(Timestamp::from_millisecond(at_ms).ok()?);
    at_ms.checked_add(offset_ms(offset))
}

/// The highest wall-clock reading the zone showed at or before the instant `at_ms`: the reading then, or,
/// while a fold repeats times, the last reading before the clocks went back.
fn wall_high_water(tz: &TimeZone, at_ms: i64) -> Option<i64> {
    let mut high = wall_at(tz, at_ms)?;
    // `preceding` yields transitions strictly before its argument: this takes one exactly at `at_ms` too.
    let after = Timestamp::from_millisecond(at_ms.checked_add(1)?).ok()?;
    for transition in tz.preceding(after).take(FOLD_TRANSITIONS_MAX) {
        let at = transition.timestamp().as_millisecond();
        if at < at_ms.saturating_sub(FOLD_LOOKBACK_MS) {
            break;
        }
        high = high.max(wall_at(tz, at - 1)?);
    }
    Some(high)
}

/// The first instant (Unix ms) at which the zone's wall clock reads `local_ms` or later: the instant it
/// reads exactly that, the earlier of two in a fold, the end of the gap for a time a gap skips.
fn first_instant_reading(tz: &TimeZone, local_ms: i64) -> Option<i64> {
    let civil = TimeZone::UTC.to_datetime(Timestamp::from_millisecond(local_ms).ok()?);
    match tz.to_ambiguous_timestamp(civil).offset() {
        AmbiguousOffset::Unambiguous { offset } => local_ms.checked_sub(offset_ms(offset)),
        AmbiguousOffset::Fold { before, after } => {
            Some(local_ms.checked_sub(offset_ms(before))?.min(local_ms.checked_sub(offset_ms(after))?))
        }
        AmbiguousOffset::Gap { after, .. } => {
            // The clock reads `local_ms` neither before the transition (it had not got there) nor after it
            // (it is already past), so the transition lies after `local_ms - after`; it is the first one.
            let from = Timestamp::from_millisecond(local_ms.checked_sub(offset_ms(after))?).ok()?;
            Some(tz.following(from).next()?.timestamp().as_millisecond())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{decide, resume, Cadence, FireDecision, Misfire};
    use super::*;

    // Epoch seconds of UTC instants, checked against `date -u -d <instant> +%s`.
    const MAR_08_2025_1200: u64 = 1_741_435_200; // 2025-03-08T12:00:00Z
    const MAR_09_2025_0700: u64 = 1_741_503_600; // 2025-03-09T07:00:00Z = 03:00 EDT, just after New York's gap
    const MAR_10_2025_0600: u64 = 1_741_586_400; // 2025-03-10T06:00:00Z = 02:00 EDT
    const MAR_10_2025_0630: u64 = 1_741_588_200; // 2025-03-10T06:30:00Z = 02:30 EDT
    const MAR_10_2025_0700: u64 = 1_741_590_000; // 2025-03-10T07:00:00Z = 03:00 EDT
    const NOV_01_2025_1200: u64 = 1_761_998_400; // 2025-11-01T12:00:00Z
    const NOV_02_2025_0500: u64 = 1_762_059_600; // 2025-11-02T05:00:00Z = 01:00 EDT
    const NOV_02_2025_0530: u64 = 1_762_061_400; // 2025-11-02T05:30:00Z = 01:30 EDT, first 01:30
    const NOV_02_2025_0600: u64 = 1_762_063_200; // 2025-11-02T06:00:00Z = 01:00 EST, the fold begins
    const NOV_02_2025_0610: u64 = 1_762_063_800; // 2025-11-02T06:10:00Z = 01:10 EST, second pass
    const NOV_02_2025_0700: u64 = 1_762_066_800; // 2025-11-02T07:00:00Z = 02:00 EST
    const NOV_03_2025_0630: u64 = 1_762_151_400; // 2025-11-03T06:30:00Z = 01:30 EST
    const MAR_30_2025_0100: u64 = 1_743_296_400; // 2025-03-30T01:00:00Z = 03:00 CEST, after Berlin's gap
    const MAR_31_2025_0030: u64 = 1_743_381_000; // 2025-03-31T00:30:00Z = 02:30 CEST
    const OCT_25_2025_1200: u64 = 1_761_393_600; // 2025-10-25T12:00:00Z
    const OCT_26_2025_0030: u64 = 1_761_438_600; // 2025-10-26T00:30:00Z = 02:30 CEST, first 02:30
    const OCT_27_2025_0130: u64 = 1_761_528_600; // 2025-10-27T01:30:00Z = 02:30 CET
    const JAN_01_2025: u64 = 1_735_689_600; // 2025-01-01T00:00:00Z
    const JAN_02_2025_0000: u64 = 1_735_776_000; // 2025-01-02T00:00:00Z = 09:00 in Tokyo

    const fn ms(secs: u64) -> u64 {
        secs * 1000
    }

    fn zone(name: &str) -> Zone {
        Zone::parse(name).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn cron(text: &str) -> Cadence {
        Cadence::Cron(CronExpr::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}")))
    }

    #[test]
    fn zones_parse_by_canonical_name_and_unknown_ones_are_refused_with_an_example() {
        assert!(Zone::parse("utc").expect("utc").is_utc());
        assert_eq!(Zone::parse(" UTC ").expect("UTC"), Zone::utc());
        assert_eq!(zone("america/new_york").name(), "America/New_York");
        assert_eq!(zone("Europe/Berlin").name(), "Europe/Berlin");
        for bad in ["", "Mars/Olympus_Mons", "EST+5", "../../etc/passwd", &"A/".repeat(40)] {
            let error = Zone::parse(bad).expect_err(bad).to_string();
            assert!(error.starts_with("unknown time zone `"), "{bad}: {error}");
            assert!(error.contains("such as `Europe/Berlin`"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_database_is_the_embedded_one() {
        // Whatever the host has (or lacks) in /usr/share/zoneinfo, the embedded database knows the zones,
        // and the global database jiff would read from the host is never asked.
        let names: Vec<&str> = ["America/New_York", "Europe/Berlin", "Asia/Tokyo", "Australia/Lord_Howe"].into();
        for name in names {
            assert!(TimeZoneDatabase::bundled().get(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn zoned_cron_times_match_hand_computed_instants() {
        let new_york = zone("America/New_York");
        let berlin = zone("Europe/Berlin");
        let tokyo = zone("Asia/Tokyo");
        let cases: &[(&str, &Zone, u64, Option<u64>)] = &[
            // (expression, zone, after, expected), all in epoch ms.
            ("0 9 * * *", &tokyo, ms(JAN_01_2025), Some(ms(JAN_02_2025_0000))),
            // Spring forward in New York: 02:30 does not exist on 2025-03-09 and fires when the gap ends.
            ("30 2 * * *", &new_york, ms(MAR_08_2025_1200), Some(ms(MAR_09_2025_0700))),
            ("30 2 * * *", &new_york, ms(MAR_09_2025_0700), Some(ms(MAR_10_2025_0630))),
            // Four matching times in the gap fire once; 03:00 itself is the same instant.
            ("*/15 2 * * *", &new_york, ms(MAR_08_2025_1200), Some(ms(MAR_09_2025_0700))),
            ("*/15 2 * * *", &new_york, ms(MAR_09_2025_0700), Some(ms(MAR_10_2025_0600))),
            ("0 2,3 * * *", &new_york, ms(MAR_09_2025_0700), Some(ms(MAR_10_2025_0600))),
            ("0 3 * * *", &new_york, ms(MAR_09_2025_0700), Some(ms(MAR_10_2025_0700))),
            // Fall back in New York: 01:30 happens twice on 2025-11-02 and fires at the first.
            ("30 1 * * *", &new_york, ms(NOV_01_2025_1200), Some(ms(NOV_02_2025_0530))),
            ("30 1 * * *", &new_york, ms(NOV_02_2025_0530), Some(ms(NOV_03_2025_0630))),
            // Every half hour: the repeated hour fires nothing, from either of its passes.
            ("*/30 * * * *", &new_york, ms(NOV_02_2025_0500), Some(ms(NOV_02_2025_0530))),
            ("*/30 * * * *", &new_york, ms(NOV_02_2025_0530), Some(ms(NOV_02_2025_0700))),
            ("*/30 * * * *", &new_york, ms(NOV_02_2025_0600), Some(ms(NOV_02_2025_0700))),
            ("*/30 * * * *", &new_york, ms(NOV_02_2025_0610), Some(ms(NOV_02_2025_0700))),
            ("* * * * * *", &new_york, ms(NOV_02_2025_0600) - 1000, Some(ms(NOV_02_2025_0700))),
            // Europe/Berlin: the same rules at its own transitions.
            ("30 2 * * *", &berlin, ms(MAR_30_2025_0100) - 3_600_000, Some(ms(MAR_30_2025_0100))),
            ("30 2 * * *", &berlin, ms(MAR_30_2025_0100), Some(ms(MAR_31_2025_0030))),
            ("30 2 * * *", &berlin, ms(OCT_25_2025_1200), Some(ms(OCT_26_2025_0030))),
            ("30 2 * * *", &berlin, ms(OCT_26_2025_0030), Some(ms(OCT_27_2025_0130))),
            // Never, in any zone.
            ("0 0 30 2 *", &berlin, ms(JAN_01_2025), None),
        ];
        for &(text, zone, after, want) in cases {
            assert_eq!(cron(text).next_after_in(zone, after), want, "{text} in {} after {after}", zone.name());
        }
    }

    #[test]
    fn zoned_fire_times_strictly_increase_through_a_year_of_transitions() {
        // Every 20 minutes through 2025 in zones with gaps and folds of an hour, and Lord Howe's half hour.
        for name in ["America/New_York", "Europe/Berlin", "Australia/Lord_Howe"] {
            let (zone, every) = (zone(name), cron("*/20 * * * *"));
            let (mut at, mut fires) = (ms(JAN_01_2025), 0u32);
            while at < ms(JAN_01_2025 + 365 * 86_400) {
                let next = every.next_after_in(&zone, at).expect("fires");
                // At most 20 minutes apart, or 20 plus the hour the wall clock repeats after a fold.
                assert!(next > at && next - at <= 80 * 60_000, "{name}: {at} -> {next}");
                let local = wall_at(zone.tz.as_ref().expect("zoned"), i64::try_from(next).expect("fits"));
                assert_eq!(local.expect("reads") % 60_000, 0, "{name}: whole minutes on the wall");
                (at, fires) = (next, fires + 1);
            }
            // 72 a day for 365 days, less the gap's fires (one, at its end, replaces those inside) and the
            // repeated hour's (New York, Berlin: 3 each; Lord Howe's half hour: 1 or 2).
            assert!((26_270..=26_280).contains(&fires), "{name}: {fires}");
        }
    }

    #[test]
    fn decisions_and_resumes_in_a_zone_use_its_wall_clock() {
        let new_york = zone("America/New_York");
        let daily = cron("30 1 * * *");
        // Due at the first 01:30 of the fold; deciding at the second 01:30 (an hour late) finds one missed
        // fire time, not two, and the next due time is the next day's.
        let got = decide(
            &daily,
            &new_york,
            Misfire::Skip,
            ms(NOV_02_2025_0530),
            ms(NOV_02_2025_0530) + 3_600_000,
            (false, false),
            1000,
        );
        assert_eq!(got, FireDecision { fire: false, next_due_ms: Some(ms(NOV_03_2025_0630)), skipped: 1 });
        // Resumed two days after it was due: both days' fire times skipped, due again after now.
        let got = resume(&daily, &new_york, Some(ms(NOV_02_2025_0530)), ms(NOV_03_2025_0630) + 60_000);
        assert_eq!(got.skipped, 2);
        assert_eq!(got.next_due_ms, daily.next_after_in(&new_york, ms(NOV_03_2025_0630) + 60_000));
        let got = resume(&daily, &new_york, Some(ms(NOV_03_2025_0630)), ms(NOV_02_2025_0700));
        assert_eq!(got, FireDecision { fire: false, next_due_ms: Some(ms(NOV_03_2025_0630)), skipped: 0 });
    }
}
