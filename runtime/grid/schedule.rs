//! Recurring-job schedules: when a job fires ([`Cadence`]: a fixed interval or a cron expression, read in a
//! [`Zone`]: UTC or an IANA time zone), what becomes of fire times that passed while nobody could fire them
//! ([`Misfire`]), and the per-job decision on each tick ([`decide`]).
//!
//! This is a pure core: no I/O, no clock, no state. Time comes in as Unix epoch milliseconds in UTC. The UTC
//! calendar arithmetic (proleptic Gregorian, no leap seconds) is done here rather than in a crate; a zoned
//! cron searches the zone's wall-clock times with the same arithmetic and maps them to instants through the
//! IANA database compiled into the binary (`zone.rs`, where the daylight-saving rules are written down). The
//! numbers this module computes are committed, not recomputed: the leader's [`decide`] and the node that
//! takes a schedule or a resume put the due times they computed into the log, and replicas apply those
//! numbers, so no replica ever evaluates time-zone data. It does not store schedules, track runs or start
//! jobs: the shell that owns the job table calls [`decide`] and acts on the returned [`FireDecision`].
//!
//! Syntax beyond Vixie cron: Quartz's `?` ("no constraint") is accepted in day-of-month and day-of-week;
//! Quartz's `L`, `W`, `#` and its year field are refused with a message naming the extension.
//!
//! Invariant: every computation is bounded, whatever the input. A cron search looks a fixed horizon ahead and
//! skips months that cannot match; `decide` counts missed intervals arithmetically and missed cron times in
//! a bounded number of steps, so a job whose cluster was down for years costs no more than one that missed
//! a minute.

use std::fmt;

use serde::{Deserialize, Serialize};

mod zone;
pub use zone::{Zone, ZONE_NAME_BYTES_MAX};

/// The shortest interval a job may have. Schedules are user input, and one that fired every millisecond
/// would turn the leader's tick loop into a job factory; 100 ms bounds one job to ten fires a second, far
/// above what a recurring job needs and far below what would crowd out other work.
pub const INTERVAL_MS_MIN: u64 = 100;

/// How far ahead a cron search looks before answering "never". Just over eight years, so that `0 0 29 2 *`
/// is still found across a century year that is not a leap year (2096-02-29, then 2104-02-29). Months that
/// cannot match are skipped whole, so this bounds one search to a few thousand day checks.
const CRON_HORIZON_DAYS: i64 = 9 * 366;

/// The most cron fire times `decide` steps through when counting misses; past this the count stops and
/// `skipped` is a lower bound. Bounds one decision for a per-second schedule whose cluster was down a year.
const CRON_MISSED_STEPS_MAX: u64 = 10_000;

/// Where `decide` stops counting missed fire times. The count feeds logs and metrics, and past a million
/// the exact number tells an operator nothing more.
const MISSED_COUNT_MAX: u64 = 1_000_000;

/// The longest cron expression accepted. A 60-item list in every field still fits; the bound keeps a
/// hostile schedule from costing more than microseconds to parse or from bloating the stored text.
const CRON_TEXT_BYTES_MAX: usize = 1024;

const SECS_PER_DAY: u64 = 86_400;

/// When a recurring job fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "CadenceRepr")]
pub enum Cadence {
    /// Every `every_ms` milliseconds, counted from `anchor_ms` (fires at anchor + k*every, k >= 0).
    Interval {
        /// The period; at least [`INTERVAL_MS_MIN`] when built by [`Cadence::interval`] or deserialized.
        every_ms: u64,
        /// The first fire time; the phase of all later ones.
        anchor_ms: u64,
    },
    /// A parsed cron expression (UTC unless the job names a [`Zone`]).
    Cron(CronExpr),
}

/// The wire shape of [`Cadence`]; deserializing goes through it so that a stored interval below
/// [`INTERVAL_MS_MIN`] is rejected at the edge rather than firing in a tight loop.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum CadenceRepr {
    Interval { every_ms: u64, anchor_ms: u64 },
    Cron(CronExpr),
}

impl TryFrom<CadenceRepr> for Cadence {
    type Error = ScheduleError;

    fn try_from(repr: CadenceRepr) -> Result<Cadence, ScheduleError> {
        match repr {
            CadenceRepr::Interval { every_ms, anchor_ms } => Cadence::interval(every_ms, anchor_ms),
            CadenceRepr::Cron(expr) => Ok(Cadence::Cron(expr)),
        }
    }
}

/// What to do with fire times that passed while nobody could fire them (leader change, cluster down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Drop them: fire only when a fire time is within the grace period of now.
    #[default]
    Skip,
    /// Fire once to catch up, however many were missed; the rest are dropped.
    RunOnce,
}

/// A parsed cron expression: an optional second field, then minute hour day-of-month month day-of-week.
///
/// Supports `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n`, `a-b/n` and `a/n` (from a to the field's
/// end), month names JAN-DEC and day names SUN-SAT (case-insensitive), day-of-week 0-7 with 0 and 7 both
/// Sunday, and the macros @yearly @annually @monthly @weekly @daily @midnight @hourly. Day-of-month and
/// day-of-week combine as in Vixie cron: if both fields are restricted, a day matches if EITHER matches.
/// As in Vixie cron, a field counts as unrestricted when its text starts with `*` (so `*/2` is one).
/// Quartz's `?` is accepted as a whole day-of-month or day-of-week field and means the same as `*`; Quartz's
/// `L`, `W`, `#` and a seventh (year) field are refused, each with a message saying so.
///
/// Serialized as its text and parsed again on deserialization, so a stored expression is always valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CronExpr {
    // Invariant: every set is non-empty and holds only values in its field's range (days 1-31, months
    // 1-12, weekdays 0-6); the search relies on it to find a first element.
    seconds: u64,
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    dom_any: bool,
    dow_any: bool,
    text: String,
}

/// Why a schedule was rejected. Every variant is bad input from a user or a file, never a bug here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression as a whole is malformed: empty, too long, wrong field count, unknown macro.
    #[error("cron: {0}")]
    Cron(String),
    /// One field of a cron expression is malformed.
    #[error("cron {field} field `{text}`: {reason}")]
    CronField {
        /// The field's name, such as `minute` or `day-of-week`.
        field: &'static str,
        /// The field's text as written.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An interval shorter than [`INTERVAL_MS_MIN`].
    #[error("interval must be at least {min} ms, got {every_ms} ms")]
    IntervalTooShort {
        /// The minimum, [`INTERVAL_MS_MIN`].
        min: u64,
        /// The interval asked for.
        every_ms: u64,
    },
    /// A time zone name the embedded IANA database does not know (or longer than [`ZONE_NAME_BYTES_MAX`]).
    #[error("unknown time zone `{name}`: give an IANA name such as `Europe/Berlin` or `America/New_York`, or `UTC`")]
    UnknownZone {
        /// The name as given.
        name: String,
    },
}

/// One cron field's range and spelling.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// The upper end `*` stands for; below `max` only for day-of-week, where 7 is a second Sunday.
    star_max: u32,
    /// Names for values, `names[i]` meaning `min_named + i`.
    names: &'static [&'static str],
    min_named: u32,
    /// Whether Quartz's `?` ("no constraint") may stand for the whole field: only the two day fields.
    question: bool,
}

const SECOND: FieldSpec =
    FieldSpec { name: "second", min: 0, max: 59, star_max: 59, names: &[], min_named: 0, question: false };
const MINUTE: FieldSpec =
    FieldSpec { name: "minute", min: 0, max: 59, star_max: 59, names: &[], min_named: 0, question: false };
const HOUR: FieldSpec =
    FieldSpec { name: "hour", min: 0, max: 23, star_max: 23, names: &[], min_named: 0, question: false };
const DAY_OF_MONTH: FieldSpec =
    FieldSpec { name: "day-of-month", min: 1, max: 31, star_max: 31, names: &[], min_named: 0, question: true };
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    star_max: 12,
    names: &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    min_named: 1,
    question: false,
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    star_max: 6,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    min_named: 0,
    question: true,
};

impl FieldSpec {
    /// Parses one comma-separated field into a bitset (bit v set when value v matches).
    fn parse(&self, text: &str) -> Result<u64, ScheduleError> {
        let fail = |reason: String| ScheduleError::CronField { field: self.name, text: text.to_owned(), reason };
        if text == "?" {
            if !self.question {
                return Err(fail("`?` (no constraint) is allowed only in day-of-month and day-of-week".to_owned()));
            }
            return self.parse("*");
        }
        let mut bits = 0u64;
        for item in text.split(',') {
            if item.is_empty() {
                return Err(fail("empty list item".to_owned()));
            }
            if item.contains('?') {
                return Err(fail("`?` (no constraint) stands alone as the whole field".to_owned()));
            }
            if let Some(extension) = quartz_extension(item) {
                return Err(fail(format!("{extension} is a Quartz extension gridkeeper does not support")));
            }
            let (range, step) = match item.split_once('/') {
                Some((range, step)) => {
                    (range, Some(parse_digits(step).ok_or_else(|| fail(format!("step `{step}` is not a number")))?))
                }
                None => (item, None),
            };
            let (lo, hi) = if range == "*" {
                (self.min, self.star_max)
            } else if let Some((lo, hi)) = range.split_once('-') {
                (self.value(lo).map_err(fail)?, self.value(hi).map_err(fail)?)
            } else {
                let value = self.value(range).map_err(fail)?;
                // `a/n` means "from a to the end of the field, every n", as in most cron dialects.
                (value, if step.is_some() { self.star_max.max(value) } else { value })
            };
            if lo > hi {
                return Err(fail(format!("range {lo}-{hi} runs backwards")));
            }
            let span = self.max - self.min + 1;
            let step = step.unwrap_or(1);
            if step == 0 || step > span {
                return Err(fail(format!("step {step} must be between 1 and {span}")));
            }
            for value in (lo..=hi).step_by(step as usize) {
                // Day-of-week 7 is Sunday again; every other field's values are their own bits.
                bits |= 1 << if self.max == 7 { value % 7 } else { value };
            }
        }
        Ok(bits)
    }

    /// Parses one number or name, checked against the field's range.
    fn value(&self, token: &str) -> Result<u32, String> {
        if token.is_empty() {
            return Err("missing value".to_owned());
        }
        if token.bytes().all(|b| b.is_ascii_digit()) {
            let value = parse_digits(token).ok_or_else(|| format!("value {token} is out of range"))?;
            if value < self.min || value > self.max {
                return Err(format!("value {value} is out of range {}-{}", self.min, self.max));
            }
            return Ok(value);
        }
        match self.names.iter().position(|name| name.eq_ignore_ascii_case(token)) {
            Some(index) => Ok(self.min_named + index as u32),
            None if self.names.is_empty() => Err(format!("`{token}` is not a number")),
            None => Err(format!("`{token}` is neither a number nor a name such as {}", self.names[0])),
        }
    }
}

/// The Quartz extension a list item uses, if it is one: `#` (5#3, the third Thursday), `L` (L, L-3, 5L, LW)
/// or `W` (15W). No valid item looks like these: no name is digits followed by `L` or `W`.
fn quartz_extension(item: &str) -> Option<&'static str> {
    let upper = item.to_ascii_uppercase();
    let digits_then =
        |suffix: char| upper.strip_suffix(suffix).is_some_and(|head| head.bytes().all(|b| b.is_ascii_digit()));
    if upper.contains('#') {
        Some("`#` (the nth weekday of the month)")
    } else if upper == "LW" || upper.starts_with("L-") || digits_then('L') {
        Some("`L` (the last day)")
    } else if digits_then('W') {
        Some("`W` (the nearest weekday)")
    } else {
        None
    }
}

/// Parses plain ASCII digits; `str::parse` alone would also take a leading `+`.
fn parse_digits(token: &str) -> Option<u32> {
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

/// The five-field expansion of a macro.
fn expand_macro(text: &str) -> Result<&'static str, ScheduleError> {
    const MACROS: [(&str, &str); 7] = [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ];
    match MACROS.iter().find(|(name, _)| name.eq_ignore_ascii_case(text)) {
        Some((_, expansion)) => Ok(expansion),
        None if text.eq_ignore_ascii_case("@reboot") => {
            Err(ScheduleError::Cron("@reboot is not supported: a grid job has no boot to run at".to_owned()))
        }
        None => Err(ScheduleError::Cron(format!(
            "unknown macro `{text}`; expected @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly"
        ))),
    }
}

impl CronExpr {
    /// Parses a 5-field (or 6-field, with a leading second) cron expression or a macro.
    ///
    /// # Errors
    /// [`ScheduleError::Cron`] if the expression is empty, longer than 1024 bytes, has the wrong number of
    /// fields or names an unknown macro; [`ScheduleError::CronField`] naming the first bad field otherwise.
    pub fn parse(text: &str) -> Result<CronExpr, ScheduleError> {
        let text = text.trim();
        if text.len() > CRON_TEXT_BYTES_MAX {
            return Err(ScheduleError::Cron(format!(
                "expression is {} bytes; at most {CRON_TEXT_BYTES_MAX} are allowed",
                text.len()
            )));
        }
        if text.is_empty() {
            return Err(ScheduleError::Cron("empty expression".to_owned()));
        }
        let body = if text.starts_with('@') { expand_macro(text)? } else { text };
        let fields: Vec<&str> = body.split_whitespace().collect();
        let (second, [minute, hour, dom, month, dow]) = (match fields.as_slice() {
            [minute, hour, dom, month, dow] => Ok(("0", [*minute, *hour, *dom, *month, *dow])),
            [second, minute, hour, dom, month, dow] => Ok((*second, [*minute, *hour, *dom, *month, *dow])),
            [_, _, _, _, _, _, _] => Err(ScheduleError::Cron(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (a leading second), got 7: \
                 a year field is a Quartz extension gridkeeper does not support"
                    .to_owned(),
            )),
            other => Err(ScheduleError::Cron(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (a leading second), got {}",
                other.len()
            ))),
        })?;
        // The narrowing casts keep every bit: each field's values are bounded by its spec's `max`.
        Ok(CronExpr {
            seconds: SECOND.parse(second)?,
            minutes: MINUTE.parse(minute)?,
            hours: HOUR.parse(hour)? as u32,
            days: DAY_OF_MONTH.parse(dom)? as u32,
            months: MONTH.parse(month)? as u16,
            weekdays: DAY_OF_WEEK.parse(dow)? as u8,
            dom_any: dom.starts_with('*') || dom == "?",
            dow_any: dow.starts_with('*') || dow == "?",
            text: if fields.contains(&"?") { without_quartz_any(body) } else { text.to_owned() },
        })
    }

    /// The expression as written (trimmed), with Quartz's `?` written as `*`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first fire time strictly after `after_ms` (whole seconds: fire times have ms == 0), or None if
    /// there is none within the next eight-plus years (e.g. Feb 30) or it would not fit in a `u64`.
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        let start = after_ms / 1000 + 1;
        let mut day = i64::try_from(start / SECS_PER_DAY).ok()?;
        let mut from_sec = (start % SECS_PER_DAY) as u32;
        let last_day = day + CRON_HORIZON_DAYS;
        while day <= last_day {
            let (year, month, dom) = civil_from_days(day);
            if !has_bit(u64::from(self.months), month) {
                day = self.first_day_of_next_month(year, month);
                from_sec = 0;
                continue;
            }
            if self.day_matches(dom, weekday(day)) {
                if let Some(sec) = self.time_at_or_after(from_sec) {
                    let secs = u64::try_from(day).ok()? * SECS_PER_DAY + u64::from(sec);
                    return secs.checked_mul(1000);
                }
            }
            day += 1;
            from_sec = 0;
        }
        None
    }

    /// Vixie cron's rule: both day fields restricted means either may match; otherwise both must.
    fn day_matches(&self, dom: u32, weekday: u32) -> bool {
        let dom_ok = has_bit(u64::from(self.days), dom);
        let dow_ok = has_bit(u64::from(self.weekdays), weekday);
        if self.dom_any || self.dow_any {
            dom_ok && dow_ok
        } else {
            dom_ok || dow_ok
        }
    }

    /// The first day of the next month this expression allows, possibly in a later year.
    fn first_day_of_next_month(&self, year: i64, month: u32) -> i64 {
        match next_bit(u64::from(self.months), month + 1) {
            Some(next) => days_from_civil(year, next, 1),
            None => days_from_civil(year + 1, self.months.trailing_zeros(), 1),
        }
    }

    /// The first matching second of the day at or after `from` (seconds since midnight), if any.
    fn time_at_or_after(&self, from: u32) -> Option<u32> {
        let (hour_from, minute_from, second_from) = (from / 3600, from / 60 % 60, from % 60);
        let mut hour = next_bit(u64::from(self.hours), hour_from)?;
        if hour == hour_from {
            if let Some((minute, second)) = self.minute_second_at_or_after(minute_from, second_from) {
                return Some(hour * 3600 + minute * 60 + second);
            }
            hour = next_bit(u64::from(self.hours), hour_from + 1)?;
        }
        Some(hour * 3600 + self.minutes.trailing_zeros() * 60 + self.seconds.trailing_zeros())
    }

    /// The first matching (minute, second) of an hour at or after the given ones, if any.
    fn minute_second_at_or_after(&self, minute_from: u32, second_from: u32) -> Option<(u32, u32)> {
        let mut minute = next_bit(self.minutes, minute_from)?;
        if minute == minute_from {
            if let Some(second) = next_bit(self.seconds, second_from) {
                return Some((minute, second));
            }
            minute = next_bit(self.minutes, minute_from + 1)?;
        }
        Some((minute, self.seconds.trailing_zeros()))
    }
}

/// `body` with each whole-field `?` written as `*`, which means the same. The text is what the log and
/// snapshots store and what older builds parse again, and those refuse `?`: storing `*` keeps an entry
/// written by this build readable by every replica of a cluster in the middle of a rolling upgrade.
fn without_quartz_any(body: &str) -> String {
    body.split_whitespace().map(|field| if field == "?" { "*" } else { field }).collect::<Vec<_>>().join(" ")
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TryFrom<String> for CronExpr {
    type Error = ScheduleError;

    fn try_from(text: String) -> Result<CronExpr, ScheduleError> {
        CronExpr::parse(&text)
    }
}

impl From<CronExpr> for String {
    fn from(expr: CronExpr) -> String {
        expr.text
    }
}

impl Cadence {
    /// An interval cadence firing at `anchor_ms + k * every_ms` for k >= 0.
    ///
    /// # Errors
    /// [`ScheduleError::IntervalTooShort`] if `every_ms` is below [`INTERVAL_MS_MIN`].
    pub fn interval(every_ms: u64, anchor_ms: u64) -> Result<Cadence, ScheduleError> {
        if every_ms < INTERVAL_MS_MIN {
            return Err(ScheduleError::IntervalTooShort { min: INTERVAL_MS_MIN, every_ms });
        }
        Ok(Cadence::Interval { every_ms, anchor_ms })
    }

    /// The first fire time strictly after `after_ms` with a cron read in UTC, or None if there is none (or
    /// it overflows `u64`).
    pub fn next_after(&self, after_ms: u64) -> Option<u64> {
        self.next_after_in(&Zone::utc(), after_ms)
    }

    /// The first fire time strictly after `after_ms`, a cron read in `zone` (an interval is the same in
    /// every zone), or None if there is none (or it overflows `u64`).
    pub fn next_after_in(&self, zone: &Zone, after_ms: u64) -> Option<u64> {
        match self {
            Cadence::Interval { every_ms, anchor_ms } => {
                if after_ms < *anchor_ms {
                    return Some(*anchor_ms);
                }
                // `checked_div` keeps a hand-built zero interval from panicking: it simply never fires again.
                let periods = (after_ms - anchor_ms).checked_div(*every_ms)?.checked_add(1)?;
                periods.checked_mul(*every_ms)?.checked_add(*anchor_ms)
            }
            Cadence::Cron(expr) => zone.cron_next_after(expr, after_ms),
        }
    }
}

/// What to do for one job on one tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FireDecision {
    /// Start a run now.
    pub fire: bool,
    /// When the job is due next: the due time if it is not yet due, else the first fire time after now;
    /// None if the schedule never fires again.
    pub next_due_ms: Option<u64>,
    /// Fire times dropped by this decision (a lower bound past 1,000,000, or past 10,000 for cron).
    pub skipped: u64,
}

/// Decides for one job at `now_ms`, given its cadence read in `zone`, the fire time it is due at
/// (`due_ms`), whether a run is still in progress and whether overlapping runs are allowed
/// (`(running, overlap)`).
///
/// Once due, the fire times in `[due_ms, now_ms]` are missed ones. The job fires once if the latest of them
/// is within `grace_ms` of now (it is on time) or `misfire` is [`Misfire::RunOnce`], unless a run is in
/// progress and overlap is not allowed, in which case that fire is skipped too. Every missed fire time not
/// fired is counted in `skipped`.
pub fn decide(
    cadence: &Cadence,
    zone: &Zone,
    misfire: Misfire,
    due_ms: u64,
    now_ms: u64,
    (running, overlap): (bool, bool),
    grace_ms: u64,
) -> FireDecision {
    if now_ms < due_ms {
        return FireDecision { fire: false, next_due_ms: Some(due_ms), skipped: 0 };
    }
    let missed = missed_count(cadence, zone, due_ms, now_ms);
    // On time when some fire time lies in [now - grace, now]. Probing for the first one at or after
    // now - grace avoids needing the latest missed time, which a capped cron count does not reach; the probe
    // runs only when grace_start > due_ms, so grace_start - 1 cannot underflow.
    let grace_start = now_ms.saturating_sub(grace_ms);
    let on_time = due_ms >= grace_start || cadence.next_after_in(zone, grace_start - 1).is_some_and(|t| t <= now_ms);
    let fire = (on_time || misfire == Misfire::RunOnce) && (overlap || !running);
    FireDecision { fire, next_due_ms: cadence.next_after_in(zone, now_ms), skipped: missed - u64::from(fire) }
}

/// Where a paused job stands when it is resumed at `now_ms`: the fire times from the one it was due at
/// (`due_ms`) through now all passed while it was paused and are skipped (counted, bounded as in
/// [`decide`]); it is next due at the first fire time after now.
pub fn resume(cadence: &Cadence, zone: &Zone, due_ms: Option<u64>, now_ms: u64) -> FireDecision {
    let skipped = due_ms.filter(|&due| due <= now_ms).map_or(0, |due| missed_count(cadence, zone, due, now_ms));
    FireDecision { fire: false, next_due_ms: cadence.next_after_in(zone, now_ms), skipped }
}

/// How many fire times lie in `[due_ms, now_ms]`, counting `due_ms` itself; at least 1, at most
/// `MISSED_COUNT_MAX`. Requires `due_ms <= now_ms`.
fn missed_count(cadence: &Cadence, zone: &Zone, due_ms: u64, now_ms: u64) -> u64 {
    let Some(first) = cadence.next_after_in(zone, due_ms).filter(|&t| t <= now_ms) else {
        return 1;
    };
    let count = match cadence {
        // Interval fire times after `first` are `first + k * every`, so the rest is one division.
        Cadence::Interval { every_ms, .. } => (now_ms - first).checked_div(*every_ms).unwrap_or(0).saturating_add(2),
        Cadence::Cron(_) => {
            let (mut count, mut last) = (2, first);
            for _ in 0..CRON_MISSED_STEPS_MAX {
                match cadence.next_after_in(zone, last) {
                    Some(next) if next <= now_ms => {
                        count += 1;
                        last = next;
                    }
                    _ => break,
                }
            }
            count
        }
    };
    count.min(MISSED_COUNT_MAX)
}

fn has_bit(set: u64, bit: u32) -> bool {
    bit < 64 && set & (1 << bit) != 0
}

/// The lowest set bit of `set` at or above `from`.
fn next_bit(set: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = set & (u64::MAX << from);
    (rest != 0).then(|| rest.trailing_zeros())
}

/// Day of the week, 0 = Sunday, for a count of days since 1970-01-01 (a Thursday).
fn weekday(days: i64) -> u32 {
    (days + 4).rem_euclid(7) as u32
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's `days_from_civil`): shifting the
/// year to start in March puts the leap day last, so month lengths follow the `(153 * m + 2) / 5` pattern.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian (year, month, day) for a count of days since 1970-01-01; inverse of
/// [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 } as u32;
    let year = year_of_era + era * 400;
    (if month <= 2 { year + 1 } else { year }, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Epoch seconds of UTC instants, checked against `date -u -d <instant> +%s`.
    const JAN_01_2025: u64 = 1_735_689_600; // 2025-01-01T00:00:00Z, Wednesday
    const JAN_01_2025_0000_10: u64 = 1_735_689_610; // 2025-01-01T00:00:10Z
    const JAN_01_2025_0830: u64 = 1_735_720_200; // 2025-01-01T08:30:00Z
    const JAN_02_2025_0830: u64 = 1_735_806_600; // 2025-01-02T08:30:00Z
    const JAN_05_2025: u64 = 1_736_035_200; // 2025-01-05T00:00:00Z, Sunday
    const FEB_29_2028: u64 = 1_835_395_200; // 2028-02-29T00:00:00Z
    const MAR_10_2025_1007_30: u64 = 1_741_601_250; // 2025-03-10T10:07:30Z
    const MAR_10_2025_1015: u64 = 1_741_601_700; // 2025-03-10T10:15:00Z
    const MAR_10_2025_1030: u64 = 1_741_602_600; // 2025-03-10T10:30:00Z
    const MAR_10_2025_1059_59: u64 = 1_741_604_399; // 2025-03-10T10:59:59Z
    const MAR_10_2025_1100: u64 = 1_741_604_400; // 2025-03-10T11:00:00Z
    const MAR_14_2025_0900: u64 = 1_741_942_800; // 2025-03-14T09:00:00Z, Friday
    const MAR_15_2025_1200: u64 = 1_742_040_000; // 2025-03-15T12:00:00Z, Saturday
    const MAR_17_2025_0900: u64 = 1_742_202_000; // 2025-03-17T09:00:00Z, Monday
    const MAR_01_2025: u64 = 1_740_787_200; // 2025-03-01T00:00:00Z, Saturday
    const MAR_07_2025: u64 = 1_741_305_600; // 2025-03-07T00:00:00Z, Friday
    const MAR_14_2025: u64 = 1_741_910_400; // 2025-03-14T00:00:00Z, Friday
    const MAR_15_2025: u64 = 1_741_996_800; // 2025-03-15T00:00:00Z, Saturday
    const MAR_31_2025: u64 = 1_743_379_200; // 2025-03-31T00:00:00Z, Monday
    const APR_01_2025: u64 = 1_743_465_600; // 2025-04-01T00:00:00Z
    const MAY_31_2025_1200: u64 = 1_748_692_800; // 2025-05-31T12:00:00Z
    const JUN_01_2025: u64 = 1_748_736_000; // 2025-06-01T00:00:00Z
    const JUL_01_2025: u64 = 1_751_328_000; // 2025-07-01T00:00:00Z
    const DEC_31_2025_2330: u64 = 1_767_223_800; // 2025-12-31T23:30:00Z
    const DEC_31_2025_2359: u64 = 1_767_225_540; // 2025-12-31T23:59:00Z
    const JAN_01_2026: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
    const JUN_01_2026: u64 = 1_780_272_000; // 2026-06-01T00:00:00Z
    const DEC_31_2026_2359: u64 = 1_798_761_540; // 2026-12-31T23:59:00Z
    const FEB_15_2024: u64 = 1_707_955_200; // 2024-02-15T00:00:00Z
    const MAR_01_2024: u64 = 1_709_251_200; // 2024-03-01T00:00:00Z
    const MAR_01_2096: u64 = 3_981_398_400; // 2096-03-01T00:00:00Z
    const FEB_29_2104: u64 = 4_233_686_400; // 2104-02-29T00:00:00Z

    const fn ms(secs: u64) -> u64 {
        secs * 1000
    }

    fn cron(text: &str) -> CronExpr {
        CronExpr::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    /// The parsed sets, for comparing two spellings of one schedule.
    fn sets(expr: &CronExpr) -> (u64, u64, u32, u32, u16, u8, bool, bool) {
        (expr.seconds, expr.minutes, expr.hours, expr.days, expr.months, expr.weekdays, expr.dom_any, expr.dow_any)
    }

    impl CronExpr {
        /// Whether the whole second `secs` (since the epoch) is a fire time: the definition, checked
        /// field by field, that the skipping search must agree with.
        fn matches_secs(&self, secs: u64) -> bool {
            let day = (secs / SECS_PER_DAY) as i64;
            let sod = secs % SECS_PER_DAY;
            let (_, month, dom) = civil_from_days(day);
            has_bit(u64::from(self.months), month)
                && self.day_matches(dom, weekday(day))
                && has_bit(u64::from(self.hours), (sod / 3600) as u32)
                && has_bit(self.minutes, (sod / 60 % 60) as u32)
                && has_bit(self.seconds, (sod % 60) as u32)
        }
    }

    fn bits(values: &[u32]) -> u64 {
        values.iter().fold(0, |acc, v| acc | 1 << v)
    }

    #[test]
    fn parse_gives_expected_sets() {
        let all_minutes = bits(&(0..60).collect::<Vec<_>>());
        let cases: &[(&str, u64, u64, u32, u32, u16, u8)] = &[
            // (text, seconds, minutes, hours, days, months, weekdays)
            ("* * * * *", 1, all_minutes, 0xff_ffff, 0xffff_fffe, 0x1ffe, 0x7f),
            ("*/15 * * * *", 1, bits(&[0, 15, 30, 45]), 0xff_ffff, 0xffff_fffe, 0x1ffe, 0x7f),
            ("5 1-3 * * *", 1, bits(&[5]), bits(&[1, 2, 3]) as u32, 0xffff_fffe, 0x1ffe, 0x7f),
            ("0,30 0 1,15 * *", 1, bits(&[0, 30]), 1, bits(&[1, 15]) as u32, 0x1ffe, 0x7f),
            ("0-30/10 0 * * *", 1, bits(&[0, 10, 20, 30]), 1, 0xffff_fffe, 0x1ffe, 0x7f),
            ("50/5 0 * * *", 1, bits(&[50, 55]), 1, 0xffff_fffe, 0x1ffe, 0x7f),
            ("0 0 * jan,Jun,DEC *", 1, 1, 1, 0xffff_fffe, bits(&[1, 6, 12]) as u16, 0x7f),
            ("0 0 * FEB-apr *", 1, 1, 1, 0xffff_fffe, bits(&[2, 3, 4]) as u16, 0x7f),
            ("0 0 * * mon-FRI", 1, 1, 1, 0xffff_fffe, 0x1ffe, bits(&[1, 2, 3, 4, 5]) as u8),
            ("0 0 * * 7", 1, 1, 1, 0xffff_fffe, 0x1ffe, 1),
            ("0 0 * * 5-7", 1, 1, 1, 0xffff_fffe, 0x1ffe, bits(&[0, 5, 6]) as u8),
            ("0 0 * * 0-7", 1, 1, 1, 0xffff_fffe, 0x1ffe, 0x7f),
            ("0 0 * * sat,SUN", 1, 1, 1, 0xffff_fffe, 0x1ffe, bits(&[0, 6]) as u8),
            ("*/20 0 0 1 1 *", bits(&[0, 20, 40]), 1, 1, 1 << 1, 1 << 1, 0x7f),
            ("59 59 23 31 12 6", 1 << 59, 1 << 59, 1 << 23, 1 << 31, 1 << 12, 1 << 6),
        ];
        for &(text, seconds, minutes, hours, days, months, weekdays) in cases {
            let expr = cron(text);
            let got = (expr.seconds, expr.minutes, expr.hours, expr.days, expr.months, expr.weekdays);
            assert_eq!(got, (seconds, minutes, hours, days, months, weekdays), "{text}");
            assert_eq!(expr.as_str(), text);
        }
    }

    #[test]
    fn parse_equivalent_spellings() {
        let cases = [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
            ("@DAILY", "0 0 * * *"),
            ("  @hourly\t", "0 * * * *"),
            ("0 0 * * 7", "0 0 * * 0"),
            ("0 0 * * SUN", "0 0 * * 0"),
            ("0 0 1 JAN *", "0 0 1 1 *"),
            ("0 0 1 * *", "0 0 0 1 * *"),
            ("*/1 * * * *", "* * * * *"),
            ("0-59 0-23 * 1-12 *", "* * * * *"),
            ("  0\t0  *  *  *  ", "0 0 * * *"),
            // Quartz's `?`: no constraint, in either day field (Quartz wants it in one of them).
            ("0 0 12 ? * MON", "0 0 12 * * MON"),
            ("0 9 ? * mon-fri", "0 9 * * 1-5"),
            ("0 0 1 * ?", "0 0 1 * *"),
            ("0 0 ? * ?", "0 0 * * *"),
        ];
        for (text, equivalent) in cases {
            assert_eq!(sets(&cron(text)), sets(&cron(equivalent)), "{text} vs {equivalent}");
        }
        // `?` is stored as `*`, which builds before `?` was accepted parse again from the log.
        assert_eq!(cron("0 0 12 ?  * MON").as_str(), "0 0 12 * * MON");
        assert_eq!(cron("@daily").as_str(), "@daily");
    }

    #[test]
    fn parse_rejects_bad_input_naming_the_problem() {
        let long = "0,".repeat(600) + "0 * * * *";
        let cases: &[(&str, &str)] = &[
            ("", "empty expression"),
            ("   ", "empty expression"),
            ("* * * *", "got 4"),
            ("* * * * * * *", "got 7"),
            ("60 * * * *", "minute field `60`: value 60 is out of range 0-59"),
            ("* 24 * * *", "hour field `24`"),
            ("* * 0 * *", "day-of-month field `0`"),
            ("* * 32 * *", "day-of-month field `32`"),
            ("* * * 0 *", "month field `0`"),
            ("* * * 13 *", "month field `13`"),
            ("* * * * 8", "day-of-week field `8`"),
            ("60 * * * * *", "second field `60`"),
            ("5-1 * * * *", "minute field `5-1`: range 5-1 runs backwards"),
            ("FRI-MON * * * *", "minute field"),
            ("* * * * FRI-MON", "day-of-week field `FRI-MON`: range 5-1 runs backwards"),
            ("*/0 * * * *", "step 0 must be between 1 and 60"),
            ("*/61 * * * *", "step 61"),
            ("*/x * * * *", "step `x` is not a number"),
            ("*/ * * * *", "step `` is not a number"),
            ("*/5/2 * * * *", "step `5/2` is not a number"),
            ("a * * * *", "minute field `a`: `a` is not a number"),
            ("* * * FOO *", "month field `FOO`: `FOO` is neither a number nor a name such as JAN"),
            ("* * * * MON-FOO", "day-of-week field"),
            ("* * * * JAN", "day-of-week field `JAN`"),
            ("* * * MON *", "month field `MON`"),
            ("MON * * * *", "minute field `MON`"),
            ("1,,2 * * * *", "minute field `1,,2`: empty list item"),
            ("1, * * * *", "empty list item"),
            ("-1 * * * *", "minute field `-1`: missing value"),
            ("1- * * * *", "missing value"),
            ("+1 * * * *", "minute field `+1`"),
            ("1-2-3 * * * *", "`2-3` is not a number"),
            ("99999999999 * * * *", "value 99999999999 is out of range"),
            ("** * * * *", "minute field `**`"),
            ("é * * * *", "minute field `é`"),
            ("@reboot", "@reboot is not supported"),
            ("@nope", "unknown macro `@nope`"),
            ("@daily extra", "unknown macro"),
            ("@", "unknown macro"),
            (&long, "at most 1024 are allowed"),
            // Quartz extensions, each named.
            ("* * L * *", "day-of-month field `L`: `L` (the last day) is a Quartz extension gridkeeper does not support"),
            ("* * L-3 * *", "`L` (the last day) is a Quartz extension"),
            ("* * 1,LW * *", "`L` (the last day) is a Quartz extension"),
            ("* * * * 5L", "day-of-week field `5L`: `L` (the last day) is a Quartz extension"),
            ("0 0 12 15W * ?", "day-of-month field `15W`: `W` (the nearest weekday) is a Quartz extension gridkeeper does not support"),
            ("0 0 12 ? * 5#3", "day-of-week field `5#3`: `#` (the nth weekday of the month) is a Quartz extension gridkeeper does not support"),
            ("0 0 12 * * ? 2025", "got 7: a year field is a Quartz extension gridkeeper does not support"),
            ("? * * * *", "minute field `?`: `?` (no constraint) is allowed only in day-of-month and day-of-week"),
            ("0 ? * * * *", "minute field `?`"),
            ("* * * ? *", "month field `?`"),
            ("* * ?,1 * *", "day-of-month field `?,1`: `?` (no constraint) stands alone as the whole field"),
            ("* * * * */?", "stands alone"),
        ];
        for &(text, want) in cases {
            match CronExpr::parse(text) {
                Ok(expr) => panic!("{text:?} parsed as {expr:?}"),
                Err(err) => assert!(err.to_string().contains(want), "{text:?}: {err} lacks {want:?}"),
            }
        }
    }

    #[test]
    fn parse_never_panics_on_noise() {
        // A seeded generator over the characters the parser cares about; the assertion is "no panic".
        const ALPHABET: &[u8] = b"0123456789*/-,@ \tJANmonSunFEBx7";
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut parsed = 0;
        for _ in 0..5000 {
            let mut text = String::new();
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            for _ in 0..(state >> 59) + 5 {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                text.push(ALPHABET[(state >> 33) as usize % ALPHABET.len()] as char);
            }
            if let Ok(expr) = CronExpr::parse(&text) {
                parsed += 1;
                let _ = expr.next_after(ms(JAN_01_2025));
            }
        }
        assert!(parsed < 5000);
    }

    #[test]
    fn next_after_matches_hand_computed_times() {
        let cases: &[(&str, u64, Option<u64>)] = &[
            // (expression, after, expected), all in epoch ms
            ("0 0 29 2 *", ms(JAN_01_2025), Some(ms(FEB_29_2028))),
            ("*/15 * * * *", ms(MAR_10_2025_1007_30), Some(ms(MAR_10_2025_1015))),
            ("*/15 * * * *", ms(MAR_10_2025_1015), Some(ms(MAR_10_2025_1030))),
            ("*/15 * * * *", ms(MAR_10_2025_1015) - 1, Some(ms(MAR_10_2025_1015))),
            ("*/15 * * * *", ms(MAR_10_2025_1059_59) + 999, Some(ms(MAR_10_2025_1100))),
            ("0 9 * * MON-FRI", ms(MAR_14_2025_0900), Some(ms(MAR_17_2025_0900))),
            ("0 9 * * MON-FRI", ms(MAR_15_2025_1200), Some(ms(MAR_17_2025_0900))),
            ("0 9 * * MON-FRI", ms(MAR_14_2025_0900) - 1, Some(ms(MAR_14_2025_0900))),
            ("0 0 9 ? * MON-FRI", ms(MAR_14_2025_0900), Some(ms(MAR_17_2025_0900))),
            ("0 0 1 * ?", ms(FEB_15_2024), Some(ms(MAR_01_2024))),
            // Vixie OR: the 1st or the 15th, or any Friday.
            ("0 0 1,15 * 5", ms(MAR_01_2025) - 1, Some(ms(MAR_01_2025))),
            ("0 0 1,15 * 5", ms(MAR_01_2025), Some(ms(MAR_07_2025))),
            ("0 0 1,15 * 5", ms(MAR_07_2025), Some(ms(MAR_14_2025))),
            ("0 0 1,15 * 5", ms(MAR_14_2025), Some(ms(MAR_15_2025))),
            // A day-of-month field starting with `*` is unrestricted, so the two fields AND (Vixie quirk).
            ("0 0 */10 * MON", ms(JAN_01_2025), Some(ms(MAR_31_2025))),
            // Month end: April has no 31st.
            ("0 12 31 * *", ms(APR_01_2025), Some(ms(MAY_31_2025_1200))),
            ("0 0 1 * *", ms(FEB_15_2024), Some(ms(MAR_01_2024))),
            // Year rollover.
            ("0 0 1 1 *", ms(JUN_01_2025), Some(ms(JAN_01_2026))),
            ("59 23 31 12 *", ms(DEC_31_2025_2359), Some(ms(DEC_31_2026_2359))),
            ("@hourly", ms(DEC_31_2025_2330), Some(ms(JAN_01_2026))),
            ("0 0 1 JUN *", ms(JUL_01_2025), Some(ms(JUN_01_2026))),
            // Sub-minute, strictly after, Sunday as 7.
            ("*/10 * * * * *", ms(JAN_01_2025) + 5_500, Some(ms(JAN_01_2025_0000_10))),
            ("30 8 * * *", ms(JAN_01_2025_0830), Some(ms(JAN_02_2025_0830))),
            ("0 0 * * 7", ms(JAN_01_2025), Some(ms(JAN_05_2025))),
            ("@weekly", ms(JAN_01_2025), Some(ms(JAN_05_2025))),
            // Never, and the century year 2100 that is not a leap year.
            ("0 0 30 2 *", ms(JAN_01_2025), None),
            ("0 0 31 4,6,9,11 *", ms(JAN_01_2025), None),
            ("0 0 29 2 *", ms(MAR_01_2096), Some(ms(FEB_29_2104))),
            ("* * * * *", u64::MAX - 1, None),
            ("* * * * *", 0, Some(60_000)),
        ];
        for &(text, after, want) in cases {
            assert_eq!(cron(text).next_after(after), want, "{text} after {after}");
        }
    }

    #[test]
    fn next_after_agrees_with_a_minute_by_minute_search() {
        // Random expressions with sets small enough to exercise the skipping, checked against brute force.
        let mut state = 42_u64;
        let mut next = |bound: u64| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % bound
        };
        for _ in 0..60 {
            let text = format!(
                "{} {} {} {} {}",
                next(60),
                ["*".to_owned(), format!("{}", next(24)), format!("*/{}", next(12) + 1)][next(3) as usize],
                ["*".to_owned(), format!("{}", next(31) + 1), format!("{}-{}", next(10) + 1, next(10) + 15)]
                    [next(3) as usize],
                ["*".to_owned(), format!("{}", next(12) + 1), format!("{},{}", next(6) + 1, next(6) + 7)]
                    [next(3) as usize],
                ["*".to_owned(), format!("{}", next(8)), format!("{}-6", next(6))][next(3) as usize],
            );
            let expr = cron(&text);
            let start = JAN_01_2025 + next(400 * SECS_PER_DAY);
            let mut want = None;
            let mut minute = start / 60 + 1;
            while minute < start / 60 + 2 * 366 * 1440 {
                if expr.matches_secs(minute * 60) {
                    want = Some(ms(minute * 60));
                    break;
                }
                minute += 1;
            }
            let got = expr.next_after(ms(start));
            match want {
                Some(_) => assert_eq!(got, want, "{text} after {start}"),
                None => assert!(got.is_none_or(|t| t >= ms(minute * 60)), "{text} after {start}: {got:?}"),
            }
        }
    }

    #[test]
    fn calendar_round_trips_and_matches_a_naive_count() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 951_868_800 / 86_400);
        assert_eq!(days_from_civil(2025, 1, 1), 20_089);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(weekday(0), 4);
        assert_eq!(weekday(20_089), 3);
        // Walk day by day from 1600 to 2500 with a naive calendar and compare both directions.
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let (mut year, mut month, mut day) = (1600_i64, 1_u32, 1_u32);
        let mut days = days_from_civil(1600, 1, 1);
        while year < 2500 {
            assert_eq!(civil_from_days(days), (year, month, day));
            assert_eq!(days_from_civil(year, month, day), days);
            let month_len = match month {
                2 if leap(year) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            day += 1;
            if day > month_len {
                day = 1;
                month += 1;
                if month > 12 {
                    month = 1;
                    year += 1;
                }
            }
            days += 1;
        }
    }

    #[test]
    fn interval_construction_and_next_after() {
        assert_eq!(Cadence::interval(99, 0), Err(ScheduleError::IntervalTooShort { min: 100, every_ms: 99 }));
        assert_eq!(Cadence::interval(0, 0), Err(ScheduleError::IntervalTooShort { min: 100, every_ms: 0 }));
        let every_minute = Cadence::interval(60_000, 1_000).expect("60 s is above the minimum");
        let cases = [(0, Some(1_000)), (999, Some(1_000)), (1_000, Some(61_000)), (60_999, Some(61_000))];
        for (after, want) in cases {
            assert_eq!(every_minute.next_after(after), want, "after {after}");
        }
        assert_eq!(every_minute.next_after(u64::MAX - 10), None);
        assert_eq!(Cadence::Interval { every_ms: 0, anchor_ms: 5 }.next_after(5), None);
    }

    /// (name, cadence, misfire, due, now, (running, overlap), grace, (fire, next_due, skipped)).
    type DecideCase<'a> = (&'a str, &'a Cadence, Misfire, u64, u64, (bool, bool), u64, (bool, Option<u64>, u64));

    #[test]
    fn decide_cases() {
        const T0: u64 = JAN_01_2025 * 1000; // 2025-01-01T00:00:00Z
        const MIN: u64 = 60_000;
        const IDLE: (bool, bool) = (false, false);
        const BUSY: (bool, bool) = (true, false);
        const BUSY_OVERLAP: (bool, bool) = (true, true);
        let interval = Cadence::interval(MIN, T0).expect("valid");
        let quarter = Cadence::Cron(cron("*/15 * * * *"));
        let never = Cadence::Cron(cron("0 0 30 2 *"));
        let (skip, once) = (Misfire::Skip, Misfire::RunOnce);
        let cases: &[DecideCase] = &[
            ("not yet due", &interval, skip, T0 + MIN, T0 + MIN - 1, IDLE, 1000, (false, Some(T0 + MIN), 0)),
            ("on time", &interval, skip, T0 + MIN, T0 + MIN + 500, IDLE, 1000, (true, Some(T0 + 2 * MIN), 0)),
            ("exactly due", &interval, skip, T0 + MIN, T0 + MIN, IDLE, 0, (true, Some(T0 + 2 * MIN), 0)),
            ("running", &interval, skip, T0 + MIN, T0 + MIN + 500, BUSY, 1000, (false, Some(T0 + 2 * MIN), 1)),
            ("overlap", &interval, skip, T0 + MIN, T0 + MIN + 500, BUSY_OVERLAP, 1000, (true, Some(T0 + 2 * MIN), 0)),
            ("late by 5 s", &interval, skip, T0 + MIN, T0 + MIN + 5000, IDLE, 1000, (false, Some(T0 + 2 * MIN), 1)),
            // Missed 1..=6 minutes past T0; the latest (6) is 30 s old at 6.5 minutes.
            ("stale skip", &interval, skip, T0 + MIN, T0 + 390_000, IDLE, 1000, (false, Some(T0 + 7 * MIN), 6)),
            ("stale run once", &interval, once, T0 + MIN, T0 + 390_000, IDLE, 1000, (true, Some(T0 + 7 * MIN), 5)),
            ("stale run once busy", &interval, once, T0 + MIN, T0 + 390_000, BUSY, 0, (false, Some(T0 + 7 * MIN), 6)),
            ("latest on time", &interval, skip, T0 + MIN, T0 + 360_500, IDLE, 1000, (true, Some(T0 + 7 * MIN), 5)),
            ("wide grace", &interval, skip, T0 + MIN, T0 + 390_000, IDLE, 30_000, (true, Some(T0 + 7 * MIN), 5)),
            ("cron on time", &quarter, skip, T0, T0 + 2000, IDLE, 5000, (true, Some(T0 + 15 * MIN), 0)),
            // Missed 00:00, 00:15, 00:30, 00:45 and 01:00; the latest is 5 minutes old at 01:05.
            ("cron stale skip", &quarter, skip, T0, T0 + 65 * MIN, IDLE, MIN, (false, Some(T0 + 75 * MIN), 5)),
            ("cron stale once", &quarter, once, T0, T0 + 65 * MIN, IDLE, MIN, (true, Some(T0 + 75 * MIN), 4)),
            ("cron never again", &never, skip, T0, T0 + 10, IDLE, 1000, (true, None, 0)),
        ];
        for &(name, cadence, misfire, due, now, (running, overlap), grace, (fire, next_due_ms, skipped)) in cases {
            let got = decide(cadence, &Zone::utc(), misfire, due, now, (running, overlap), grace);
            assert_eq!(got, FireDecision { fire, next_due_ms, skipped }, "{name}");
        }
    }

    #[test]
    fn decide_bounds_the_missed_count() {
        // A fast interval down for about 30 years: counted arithmetically and capped.
        let fast = Cadence::interval(100, 0).expect("valid");
        let got = decide(&fast, &Zone::utc(), Misfire::Skip, 0, 1_000_000_000_000, (false, false), 0);
        assert_eq!(got, FireDecision { fire: true, next_due_ms: Some(1_000_000_000_100), skipped: 999_999 });
        // A per-second cron down for a year: counting stops after 10,000 steps, the next due time is exact,
        // and the grace check still sees the fire time at now.
        let every_second = Cadence::Cron(cron("* * * * * *"));
        let (due, now) = (ms(JAN_01_2025), ms(JAN_01_2026));
        let got = decide(&every_second, &Zone::utc(), Misfire::Skip, due, now, (false, false), 0);
        assert_eq!(got, FireDecision { fire: true, next_due_ms: Some(now + 1000), skipped: 10_001 });
        let got = decide(&every_second, &Zone::utc(), Misfire::Skip, due, now + 500, (false, false), 100);
        assert_eq!(got, FireDecision { fire: false, next_due_ms: Some(now + 1000), skipped: 10_002 });
    }

    #[test]
    fn decide_handles_the_epoch() {
        let at_zero = Cadence::interval(1000, 0).expect("valid");
        assert!(decide(&at_zero, &Zone::utc(), Misfire::Skip, 0, 0, (false, false), 0).fire);
        let midnight = Cadence::Cron(cron("0 0 * * *"));
        let got = decide(&midnight, &Zone::utc(), Misfire::Skip, 0, 500, (false, false), 1000);
        assert_eq!(got, FireDecision { fire: true, next_due_ms: Some(ms(SECS_PER_DAY)), skipped: 0 });
    }

    #[test]
    fn errors_display_clearly() {
        let cases = [
            (ScheduleError::Cron("empty expression".to_owned()), "cron: empty expression"),
            (
                ScheduleError::CronField { field: "hour", text: "24".to_owned(), reason: "bad".to_owned() },
                "cron hour field `24`: bad",
            ),
            (ScheduleError::IntervalTooShort { min: 100, every_ms: 5 }, "interval must be at least 100 ms, got 5 ms"),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
        assert_eq!(cron(" 0 9 * * MON-FRI ").to_string(), "0 9 * * MON-FRI");
        assert_eq!(CronExpr::try_from("@daily".to_owned()).map(String::from), Ok("@daily".to_owned()));
    }
}

// Kept apart from `tests` because it alone needs serde_json (a dependency of the crate, not of this module).
#[cfg(test)]
mod serde_tests {
    use super::*;

    #[test]
    fn cadence_round_trips_and_validates_on_the_way_in() {
        let cases = [
            (Cadence::Cron(CronExpr::parse("0 9 * * MON-FRI").expect("valid")), r#"{"cron":"0 9 * * MON-FRI"}"#),
            (Cadence::interval(60_000, 5).expect("valid"), r#"{"interval":{"every_ms":60000,"anchor_ms":5}}"#),
        ];
        for (cadence, json) in cases {
            assert_eq!(serde_json::to_string(&cadence).expect("serializes"), json);
            assert_eq!(serde_json::from_str::<Cadence>(json).expect("deserializes"), cadence);
        }
        let bad = [
            (r#"{"interval":{"every_ms":5,"anchor_ms":0}}"#, "interval must be at least 100 ms"),
            (r#"{"cron":"61 * * * *"}"#, "cron minute field `61`"),
        ];
        for (json, want) in bad {
            let err = serde_json::from_str::<Cadence>(json).expect_err(json).to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
        assert_eq!(serde_json::to_string(&Misfire::RunOnce).expect("serializes"), r#""run_once""#);
        assert_eq!(serde_json::from_str::<Misfire>(r#""skip""#).expect("deserializes"), Misfire::default());
    }
}
