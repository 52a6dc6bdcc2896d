//! How the command line prints for people: aligned tables, times as RFC 3339 or as ages (`3s ago`),
//! and durations (`1m30s`).
//!
//! Tables are plain text: columns separated by two spaces, a header row of capitals, no borders, no
//! colour and no wrapping (whether stdout is a terminal or not), so `grep`, `awk` and `cut -c` work
//! on them and a pipe gets the same bytes a terminal shows. Machines should read `--json`, not these.
//! Nothing here reads a clock: the caller passes "now" in, so every format is tested exactly.

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, ContentArrangement};

use crate::grid::schedule::civil_from_days;

/// Spaces between two columns.
const COLUMN_GAP: u16 = 2;

/// A table of text cells, printed with aligned columns:
///
/// ```text
/// ID  NAME
///  7  seven
/// ```
pub struct Table {
    inner: comfy_table::Table,
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        let mut inner = comfy_table::Table::new();
        inner.load_style(NOTHING).set_content_arrangement(ContentArrangement::Disabled);
        inner.set_header(header.into_iter().map(Into::into).collect::<Vec<String>>());
        for column in inner.column_iter_mut() {
            column.set_padding((0, COLUMN_GAP));
        }
        Table { inner }
    }

    /// The same table with these columns (counted from 0) aligned to the right: numbers, ages.
    pub fn right(mut self, columns: impl IntoIterator<Item = usize>) -> Table {
        for index in columns {
            if let Some(column) = self.inner.column_mut(index) {
                column.set_cell_alignment(CellAlignment::Right);
            }
        }
        self
    }

    /// Adds a row; a missing cell is left empty, an extra one is kept as another column.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Table {
        self.inner.add_row(cells.into_iter().map(Into::into).collect::<Vec<String>>());
        self
    }

    /// Rows so far.
    pub fn len(&self) -> usize {
        self.inner.row_count()
    }

    /// Whether there are no rows (the header alone).
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The table as text: the header, then one line per row, each ending in a newline and none
    /// ending in spaces.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in self.inner.lines() {
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.render())
    }
}

/// Unix milliseconds as RFC 3339 in UTC with milliseconds: `2026-11-30T18:00:00.250Z`.
pub fn rfc3339(unix_ms: u64) -> String {
    let (days, rest) = ((unix_ms / 86_400_000) as i64, unix_ms % 86_400_000);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second, millis) = (rest / 3_600_000, rest / 60_000 % 60, rest / 1_000 % 60, rest % 1_000);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

/// How long ago `then_ms` was at `now_ms` (both Unix milliseconds): `3s ago`, `5m12s ago`, or `in 2h`
/// for a time still to come.
pub fn age(now_ms: u64, then_ms: u64) -> String {
    if then_ms > now_ms {
        format!("in {}", duration(then_ms - now_ms))
    } else {
        format!("{} ago", duration(now_ms - then_ms))
    }
}

/// A span of milliseconds in at most two units: `250ms`, `12s`, `5m12s`, `3h5m`, `2d4h` (a zero
/// second unit is left out: `5m`, `2d`).
pub fn duration(ms: u64) -> String {
    const SECOND: u64 = 1_000;
    const MINUTE: u64 = 60 * SECOND;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    let two = |big: u64, big_unit: &str, small: u64, small_unit: &str| {
        if small == 0 {
            format!("{big}{big_unit}")
        } else {
            format!("{big}{big_unit}{small}{small_unit}")
        }
    };
    match ms {
        ms if ms < SECOND => format!("{ms}ms"),
        ms if ms < MINUTE => format!("{}s", ms / SECOND),
        ms if ms < HOUR => two(ms / MINUTE, "m", ms % MINUTE / SECOND, "s"),
        ms if ms < DAY => two(ms / HOUR, "h", ms % HOUR / MINUTE, "m"),
        ms => two(ms / DAY, "d", ms % DAY / HOUR, "h"),
    }
}

/// An optional value as a cell: `-` when absent.
pub fn or_dash<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |value| value.to_string())
}

/// A value as one line of JSON.
///
/// # Errors
/// serde_json's message (a map with non-string keys, say).
pub fn json_line(value: &impl serde::Serialize) -> Result<String, String> {
    serde_json::to_string(value).map_err(|error| format!("cannot print JSON: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_and_trim_trailing_spaces() {
        let mut table = Table::new(["ID", "TASK", "STATE", "ATTEMPTS"]).right([0, 3]);
        table.row(["7", "echo", "succeeded", "1"]);
        table.row(["12345", "sleep", "running", "10"]);
        table.row(["9", "noop", "-", ""]);
        assert_eq!(table.len(), 3);
        assert_eq!(
            table.render(),
            "   ID  TASK   STATE      ATTEMPTS\n\
             \x20   7  echo   succeeded         1\n\
             12345  sleep  running          10\n\
             \x20   9  noop   -\n"
        );
        // Every column starts at the same byte on every line (left) or ends there (right).
        let rendered = table.render();
        let lines: Vec<&str> = rendered.lines().collect();
        assert!(lines.iter().all(|line| line.is_ascii() && !line.ends_with(' ')));
        assert!(lines.iter().all(|line| line[5..7] == *"  " && line.as_bytes()[7] != b' '));
    }

    #[test]
    fn an_empty_table_is_its_header() {
        let table = Table::new(["NAME", "KIND"]);
        assert!(table.is_empty());
        assert_eq!(table.to_string(), "NAME  KIND\n");
    }

    #[test]
    fn a_wide_cell_widens_its_column_and_nothing_wraps() {
        let long = "x".repeat(300);
        let mut table = Table::new(["A", "B"]);
        table.row([long.as_str(), "b"]);
        assert_eq!(table.render().lines().nth(1), Some(format!("{long}  b").as_str()));
    }

    #[test]
    fn rfc3339_prints_utc_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_061_600_250), "2026-11-30T18:00:00.250Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn durations_use_at_most_two_units() {
        let cases = [
            (0, "0ms"),
            (999, "999ms"),
            (1_000, "1s"),
            (59_999, "59s"),
            (60_000, "1m"),
            (90_000, "1m30s"),
            (3_599_000, "59m59s"),
            (3_600_000, "1h"),
            (3_900_000, "1h5m"),
            (86_400_000, "1d"),
            (2 * 86_400_000 + 4 * 3_600_000 + 59_000, "2d4h"),
            (u64::MAX, "213503982334d14h"),
        ];
        for (ms, text) in cases {
            assert_eq!(duration(ms), text, "{ms}");
        }
    }

    #[test]
    fn ages_look_back_and_forward() {
        let now = 1_796_061_600_000;
        assert_eq!(age(now, now), "0ms ago");
        assert_eq!(age(now, now - 3_000), "3s ago");
        assert_eq!(age(now, now - 312_000), "5m12s ago");
        assert_eq!(age(now, now + 7_200_000), "in 2h");
        assert_eq!(age(now, 0), "20787d18h ago");
    }

    #[test]
    fn optional_cells_show_a_dash() {
        assert_eq!(or_dash(Some(3)), "3");
        assert_eq!(or_dash(None::<u64>), "-");
        assert_eq!(json_line(&serde_json::json!({"a": 1})), Ok(r#"{"a":1}"#.to_string()));
    }
}
