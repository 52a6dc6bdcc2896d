//! The bookkeeping of a node's task logs (core: no I/O, no clock): which attempts have log files,
//! how big they are, each line's number, when an attempt's current segment rotates, which attempts
//! retention deletes, and how stored lines are encoded, parsed back (bounded) and windowed.
//!
//! Each attempt that logged on this node has up to two append-only segment files named for it
//! (`<task>-<attempt>-<start_ms>.log`, the current one, and `.log.1`, the previous one). A line that
//! would take the current segment past [`TASK_LOG_ATTEMPT_BYTES_MAX`] first rotates it (the current
//! segment replaces the previous one), so an attempt never holds more than twice that on disk and
//! the last `TASK_LOG_ATTEMPT_BYTES_MAX` of its lines are always there to serve. Lines are numbered
//! within their attempt from 0 (`seq`), so a reader that saw up to `seq` asks for what came after,
//! and a served window that starts above 0 says older lines were dropped (`truncated`).
//!
//! The node's budget counts every segment in whole `TASK_LOG_FILE_BYTES_MIN` blocks. Retention
//! deletes ended attempts' files whose attempt started more than the configured age ago, and then,
//! while the budget is exceeded, the oldest ended attempts' files until it is 90% full. An attempt
//! still running is never deleted (at most two segments each, bounded by the node's slots).
//!
//! The shell (`worker/logs.rs`) feeds inputs (`on_found` from a directory scan, `handle_open`,
//! `handle_line`, `handle_close`, `handle_retention` with the time) and executes the [`FileOp`]s
//! they push, in order.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::grid::kinds::LogLevel;
use crate::grid::task::TaskId;
use crate::limits::{
    TASK_LOGS_AGE_MS_MAX_DEFAULT, TASK_LOGS_AGE_MS_MAX_RANGE, TASK_LOGS_BYTES_MAX_DEFAULT, TASK_LOGS_BYTES_MAX_RANGE,
    TASK_LOG_ATTEMPT_BYTES_MAX, TASK_LOG_FILE_BYTES_MIN, TASK_LOG_LINE_BYTES_MAX, TASK_LOG_TEXT_BYTES_MAX,
};

/// One attempt of one task: what a log belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttemptKey {
    /// The task.
    pub task: TaskId,
    /// Its attempt number (1 for the first).
    pub number: u32,
}

/// One stored log line, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Its number within the attempt, from 0.
    pub seq: u64,
    /// When it was logged (Unix ms).
    pub ts_ms: u64,
    /// How much it matters.
    pub level: LogLevel,
    /// What was said (at most [`TASK_LOG_TEXT_BYTES_MAX`] bytes).
    pub text: String,
}

/// How much task log a node keeps (`--task-logs-bytes-max`, `--task-logs-age-max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskLogsConfig {
    /// Budget of all attempts' log files together, counted in whole blocks.
    pub bytes_max: u64,
    /// An ended attempt's logs are deleted this long after the attempt started.
    pub age_max_ms: u64,
}

impl Default for TaskLogsConfig {
    fn default() -> Self {
        TaskLogsConfig { bytes_max: TASK_LOGS_BYTES_MAX_DEFAULT, age_max_ms: TASK_LOGS_AGE_MS_MAX_DEFAULT }
    }
}

impl TaskLogsConfig {
    /// Parses a byte size: digits with an optional binary unit (`B`, `K`/`KiB`, `M`/`MiB`, `G`/`GiB`),
    /// within [`TASK_LOGS_BYTES_MAX_RANGE`].
    ///
    /// # Errors
    /// A message saying what is accepted.
    pub fn parse_bytes(text: &str) -> Result<u64, String> {
        let shift = |unit: &str| match unit {
            "" | "B" => Some(0),
            "K" | "KiB" => Some(10),
            "M" | "MiB" => Some(20),
            "G" | "GiB" => Some(30),
            _ => None,
        };
        let bytes = parse_amount(text, shift)
            .ok_or_else(|| format!("{text:?} is not a size (digits and an optional unit: KiB, MiB or GiB)"))?;
        within(bytes, &TASK_LOGS_BYTES_MAX_RANGE, "bytes")
    }

    /// Parses an age: digits with a unit (`ms`, `s`, `m`, `h`, `d`), within
    /// [`TASK_LOGS_AGE_MS_MAX_RANGE`]; returns milliseconds.
    ///
    /// # Errors
    /// A message saying what is accepted.
    pub fn parse_age_ms(text: &str) -> Result<u64, String> {
        // The unit is required: a bare number could mean seconds or milliseconds.
        let factor = |unit: &str| match unit {
            "ms" => Some(1),
            "s" => Some(1_000),
            "m" => Some(60_000),
            "h" => Some(3_600_000),
            "d" => Some(86_400_000),
            _ => None,
        };
        let (digits, unit) = split_unit(text.trim());
        let ms = digits
            .parse::<u64>()
            .ok()
            .zip(factor(unit))
            .and_then(|(value, factor)| value.checked_mul(factor))
            .ok_or_else(|| format!("{text:?} is not an age (digits and a unit: ms, s, m, h or d, as in 7d)"))?;
        within(ms, &TASK_LOGS_AGE_MS_MAX_RANGE, "ms")
    }
}

fn split_unit(text: &str) -> (&str, &str) {
    let end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    (&text[..end], text[end..].trim())
}

fn parse_amount(text: &str, shift: impl Fn(&str) -> Option<u32>) -> Option<u64> {
    let (digits, unit) = split_unit(text.trim());
    let value = digits.parse::<u64>().ok()?;
    value.checked_mul(1u64.checked_shl(shift(unit)?)?)
}

fn within(value: u64, range: &std::ops::RangeInclusive<u64>, unit: &str) -> Result<u64, String> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(format!("{value} {unit} is outside {}..={} {unit}", range.start(), range.end()))
    }
}

/// Which of an attempt's two segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The one appended to.
    Current,
    /// The one before the last rotation.
    Previous,
}

/// The file name of `key`'s `segment`.
pub fn segment_name(key: AttemptKey, start_ms: u64, segment: Segment) -> String {
    let suffix = match segment {
        Segment::Current => "",
        Segment::Previous => ".1",
    };
    format!("{}-{}-{start_ms}.log{suffix}", key.task.0, key.number)
}

/// The attempt, start time and segment a file name stands for; `None` for any other name (a file
/// that is not a segment is left alone).
pub fn parse_segment_name(name: &str) -> Option<(AttemptKey, u64, Segment)> {
    let (stem, segment) = match name.strip_suffix(".log.1") {
        Some(stem) => (stem, Segment::Previous),
        None => (name.strip_suffix(".log")?, Segment::Current),
    };
    let mut parts = stem.split('-');
    let number = |part: Option<&str>| part.filter(|part| part.bytes().all(|b| b.is_ascii_digit()))?.parse().ok();
    let task: u64 = number(parts.next())?;
    let attempt: u64 = number(parts.next())?;
    let start_ms: u64 = number(parts.next())?;
    if parts.next().is_some() {
        return None;
    }
    let key = AttemptKey { task: TaskId(task), number: u32::try_from(attempt).ok()? };
    // Names are written only one way: refuse another spelling of the same numbers (leading zeros).
    (segment_name(key, start_ms, segment) == name).then_some((key, start_ms, segment))
}

/// What the shell does to the log directory, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Appends `bytes` to the file `name` (creating it).
    Append {
        /// The file.
        name: String,
        /// Whole encoded lines.
        bytes: Vec<u8>,
    },
    /// Renames `from` over `to`: the current segment becomes the previous one.
    Rotate {
        /// The current segment.
        from: String,
        /// The previous segment, replaced.
        to: String,
    },
    /// Deletes the file `name`, if it exists.
    Delete {
        /// The file.
        name: String,
    },
}

/// An attempt's files, for a reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptFiles {
    /// The previous segment's name (it may not exist).
    pub previous: String,
    /// The current segment's name (it may not exist).
    pub current: String,
    /// Whether the attempt may still log here.
    pub open: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    start_ms: u64,
    /// The next line's number; `None` for an attempt found on disk whose files were not read.
    next_seq: Option<u64>,
    current_bytes: u64,
    previous_bytes: u64,
    open: bool,
}

impl Entry {
    fn accounted(&self) -> u64 {
        blocks(self.current_bytes) + blocks(self.previous_bytes)
    }
}

/// What a file of `bytes` counts against the budget.
fn blocks(bytes: u64) -> u64 {
    bytes.div_ceil(TASK_LOG_FILE_BYTES_MIN) * TASK_LOG_FILE_BYTES_MIN
}

/// The node's index of attempt logs.
#[derive(Debug, Clone)]
pub struct LogBook {
    config: TaskLogsConfig,
    entries: BTreeMap<AttemptKey, Entry>,
    accounted: u64,
}

impl LogBook {
    /// An empty book.
    pub fn new(config: TaskLogsConfig) -> LogBook {
        LogBook { config, entries: BTreeMap::new(), accounted: 0 }
    }

    /// Bytes counted against the budget.
    pub fn accounted_bytes(&self) -> u64 {
        self.accounted
    }

    /// Attempts with an entry (files, or open).
    pub fn attempts(&self) -> usize {
        self.entries.len()
    }

    /// Whether the budget is exceeded (retention is due).
    pub fn over_budget(&self) -> bool {
        self.accounted > self.config.bytes_max
    }

    /// A file found in the directory at start, `bytes` long. Other names are ignored (`false`). Two
    /// start times for one attempt cannot both be right: the older one's file is deleted.
    pub fn on_found(&mut self, name: &str, bytes: u64, out: &mut Vec<FileOp>) -> bool {
        let Some((key, start_ms, segment)) = parse_segment_name(name) else { return false };
        let fresh = || Entry { start_ms, next_seq: None, current_bytes: 0, previous_bytes: 0, open: false };
        let entry = self.entries.entry(key).or_insert_with(fresh);
        if entry.start_ms > start_ms {
            out.push(FileOp::Delete { name: name.to_string() });
            return true;
        }
        if entry.start_ms < start_ms {
            for segment in [Segment::Current, Segment::Previous] {
                out.push(FileOp::Delete { name: segment_name(key, entry.start_ms, segment) });
            }
            self.accounted -= entry.accounted();
            *entry = fresh();
        }
        self.accounted -= entry.accounted();
        match segment {
            Segment::Current => entry.current_bytes = bytes,
            Segment::Previous => entry.previous_bytes = bytes,
        }
        self.accounted += entry.accounted();
        true
    }

    /// An attempt starts logging at `now_ms`. Returns its files when they exist from before and were
    /// not read: the shell reads them and calls [`LogBook::on_recovered`] before any line.
    pub fn handle_open(&mut self, key: AttemptKey, now_ms: u64) -> Option<AttemptFiles> {
        let entry = self.entries.entry(key).or_insert(Entry {
            start_ms: now_ms,
            next_seq: Some(0),
            current_bytes: 0,
            previous_bytes: 0,
            open: false,
        });
        entry.open = true;
        if entry.next_seq.is_some() {
            return None;
        }
        self.files(key)
    }

    /// What the files of a reopened attempt held: the next line's number, and whether the current
    /// segment ends in a torn line (a process killed mid-write), which gets its newline first.
    pub fn on_recovered(&mut self, key: AttemptKey, next_seq: u64, torn: bool, out: &mut Vec<FileOp>) {
        let Some(entry) = self.entries.get_mut(&key) else { return };
        entry.next_seq = Some(next_seq);
        if torn {
            self.accounted -= entry.accounted();
            entry.current_bytes += 1;
            self.accounted += entry.accounted();
            out.push(FileOp::Append {
                name: segment_name(key, entry.start_ms, Segment::Current),
                bytes: b"\n".to_vec(),
            });
        }
    }

    /// A line of an open attempt: numbered, encoded and appended, rotating the current segment
    /// first if the line would take it past [`TASK_LOG_ATTEMPT_BYTES_MAX`]. A line for an attempt
    /// that is not open here is ignored.
    pub fn handle_line(&mut self, key: AttemptKey, ts_ms: u64, level: LogLevel, text: &str, out: &mut Vec<FileOp>) {
        let Some(entry) = self.entries.get_mut(&key).filter(|entry| entry.open) else { return };
        let seq = entry.next_seq.unwrap_or(0);
        let line = LogLine { seq, ts_ms, level, text: cut_text(text).into_owned() };
        let bytes = encode_line(&line);
        let length = bytes.len() as u64;
        self.accounted -= entry.accounted();
        let current = segment_name(key, entry.start_ms, Segment::Current);
        if entry.current_bytes > 0 && entry.current_bytes + length > TASK_LOG_ATTEMPT_BYTES_MAX as u64 {
            out.push(FileOp::Rotate {
                from: current.clone(),
                to: segment_name(key, entry.start_ms, Segment::Previous),
            });
            entry.previous_bytes = entry.current_bytes;
            entry.current_bytes = 0;
        }
        entry.current_bytes += length;
        entry.next_seq = Some(seq + 1);
        self.accounted += entry.accounted();
        out.push(FileOp::Append { name: current, bytes });
    }

    /// The attempt will log no more here. An attempt that wrote nothing leaves no entry.
    pub fn handle_close(&mut self, key: AttemptKey) {
        let Some(entry) = self.entries.get_mut(&key) else { return };
        entry.open = false;
        if entry.current_bytes == 0 && entry.previous_bytes == 0 {
            self.entries.remove(&key);
        }
    }

    /// Deletes, at `now_ms`, every ended attempt's files older than the age limit, then the oldest
    /// ended attempts' files while over the budget, down to 90% of it. Returns how many attempts'
    /// logs were deleted.
    pub fn handle_retention(&mut self, now_ms: u64, out: &mut Vec<FileOp>) -> usize {
        let age_max = self.config.age_max_ms;
        let mut doomed: Vec<AttemptKey> = self
            .entries
            .iter()
            .filter(|(_, entry)| !entry.open && entry.start_ms.saturating_add(age_max) <= now_ms)
            .map(|(key, _)| *key)
            .collect();
        let mut accounted = self.accounted - doomed.iter().map(|key| self.entries[key].accounted()).sum::<u64>();
        if accounted > self.config.bytes_max {
            let low_water = self.config.bytes_max - self.config.bytes_max / 10;
            let mut closed: Vec<(u64, AttemptKey, u64)> = self
                .entries
                .iter()
                .filter(|(key, entry)| !entry.open && !doomed.contains(key))
                .map(|(key, entry)| (entry.start_ms, *key, entry.accounted()))
                .collect();
            closed.sort_unstable();
            for (_, key, bytes) in closed {
                if accounted <= low_water {
                    break;
                }
                accounted -= bytes;
                doomed.push(key);
            }
        }
        for key in &doomed {
            if let Some(entry) = self.entries.remove(key) {
                self.accounted -= entry.accounted();
                for segment in [Segment::Current, Segment::Previous] {
                    out.push(FileOp::Delete { name: segment_name(*key, entry.start_ms, segment) });
                }
            }
        }
        doomed.len()
    }

    /// `key`'s files, if it has an entry.
    pub fn files(&self, key: AttemptKey) -> Option<AttemptFiles> {
        let entry = self.entries.get(&key)?;
        Some(AttemptFiles {
            previous: segment_name(key, entry.start_ms, Segment::Previous),
            current: segment_name(key, entry.start_ms, Segment::Current),
            open: entry.open,
        })
    }
}

/// The marker that ends a cut text.
fn cut_marker(cut: usize) -> String {
    format!(" [... {cut} more bytes cut]")
}

/// `text` within [`TASK_LOG_TEXT_BYTES_MAX`]: as it is, or cut at a character boundary and ended with
/// a marker saying how many bytes were cut.
pub fn cut_text(text: &str) -> Cow<'_, str> {
    if text.len() <= TASK_LOG_TEXT_BYTES_MAX {
        return Cow::Borrowed(text);
    }
    // The marker takes at most 40 bytes.
    let mut end = TASK_LOG_TEXT_BYTES_MAX - 40;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{}", &text[..end], cut_marker(text.len() - end)))
}

/// The warning that stands for `count` lines dropped because the attempt logged faster than the node
/// writes.
pub fn dropped_text(count: u64) -> String {
    format!("gridkeeper: {count} lines dropped: this attempt logged faster than the node writes its logs")
}

/// A line as stored: one line of JSON and a newline.
pub fn encode_line(line: &LogLine) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(line).expect("a log line of plain fields always serializes");
    bytes.push(b'\n');
    bytes
}

/// The lines in `bytes` with their stored lengths. Only whole lines (ending in a newline) count; a
/// line longer than [`TASK_LOG_LINE_BYTES_MAX`] or that does not parse is skipped.
pub fn parse_lines(bytes: &[u8]) -> Vec<(LogLine, usize)> {
    let mut lines = Vec::new();
    let mut rest = bytes;
    while let Some(end) = rest.iter().position(|&byte| byte == b'\n') {
        let (raw, after) = rest.split_at(end + 1);
        rest = after;
        if raw.len() > TASK_LOG_LINE_BYTES_MAX {
            continue;
        }
        if let Ok(line) = serde_json::from_slice::<LogLine>(&raw[..end]) {
            lines.push((line, raw.len()));
        }
    }
    lines
}

/// What a reader gets of an attempt's lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Window {
    /// The kept lines after the reader's `after`, oldest first.
    pub lines: Vec<LogLine>,
    /// Older lines were dropped by the per-attempt bound.
    pub truncated: bool,
}

/// The last [`TASK_LOG_ATTEMPT_BYTES_MAX`] of an attempt's lines from its previous and current
/// segments, then only those numbered above `after`.
pub fn read_window(previous: &[u8], current: &[u8], after: Option<u64>) -> Window {
    let mut lines = parse_lines(previous);
    lines.extend(parse_lines(current));
    let mut kept = 0usize;
    let mut first = lines.len();
    for (index, (_, length)) in lines.iter().enumerate().rev() {
        if kept + length > TASK_LOG_ATTEMPT_BYTES_MAX {
            break;
        }
        kept += length;
        first = index;
    }
    let lines: Vec<LogLine> = lines.into_iter().skip(first).map(|(line, _)| line).collect();
    let truncated = lines.first().is_some_and(|line| line.seq > 0);
    let lines = lines.into_iter().filter(|line| after.is_none_or(|after| line.seq > after)).collect();
    Window { lines, truncated }
}

/// What a reopened attempt's files say: the next line's number, and whether the current segment
/// ends in a torn line.
pub fn recovered_seq(previous: &[u8], current: &[u8]) -> (u64, bool) {
    let last = parse_lines(current).last().or(parse_lines(previous).last()).map(|(line, _)| line.seq);
    let next = last.map_or(0, |seq| seq + 1);
    (next, !current.is_empty() && !current.ends_with(b"\n"))
}

#[cfg(test)]
mod tests;
