use super::*;

fn key(task: u64, number: u32) -> AttemptKey {
    AttemptKey { task: TaskId(task), number }
}

fn config(bytes_max: u64, age_max_ms: u64) -> TaskLogsConfig {
    TaskLogsConfig { bytes_max, age_max_ms }
}

/// Applies file operations to an in-memory directory, as the shell does to the real one.
fn apply(dir: &mut BTreeMap<String, Vec<u8>>, ops: Vec<FileOp>) {
    for op in ops {
        match op {
            FileOp::Append { name, bytes } => dir.entry(name).or_default().extend(bytes),
            FileOp::Rotate { from, to } => {
                let current = dir.remove(&from).unwrap_or_default();
                dir.insert(to, current);
            }
            FileOp::Delete { name } => {
                dir.remove(&name);
            }
        }
    }
}

fn window(dir: &BTreeMap<String, Vec<u8>>, book: &LogBook, key: AttemptKey, after: Option<u64>) -> Window {
    let files = book.files(key).expect("an entry");
    let read = |name: &String| dir.get(name).cloned().unwrap_or_default();
    read_window(&read(&files.previous), &read(&files.current), after)
}

#[test]
fn lines_are_numbered_from_zero_per_attempt_and_only_open_attempts_log() {
    let mut book = LogBook::new(TaskLogsConfig::default());
    let mut dir = BTreeMap::new();
    let mut out = Vec::new();
    book.handle_line(key(1, 1), 5, LogLevel::Info, "before open", &mut out);
    assert!(out.is_empty(), "an attempt that is not open logs nothing");
    assert_eq!(book.handle_open(key(1, 1), 1_000), None);
    assert_eq!(book.handle_open(key(1, 2), 2_000), None);
    book.handle_line(key(1, 1), 10, LogLevel::Info, "a", &mut out);
    book.handle_line(key(1, 2), 11, LogLevel::Warn, "b", &mut out);
    book.handle_line(key(1, 1), 12, LogLevel::Error, "c", &mut out);
    assert_eq!(out.len(), 3);
    assert!(matches!(&out[0], FileOp::Append { name, .. } if name == "1-1-1000.log"));
    assert!(matches!(&out[1], FileOp::Append { name, .. } if name == "1-2-2000.log"));
    apply(&mut dir, std::mem::take(&mut out));
    let first = window(&dir, &book, key(1, 1), None);
    let seqs: Vec<(u64, &str)> = first.lines.iter().map(|line| (line.seq, line.text.as_str())).collect();
    assert_eq!(seqs, [(0, "a"), (1, "c")]);
    assert!(!first.truncated);
    assert_eq!(first.lines[1], LogLine { seq: 1, ts_ms: 12, level: LogLevel::Error, text: "c".into() });
    let second = window(&dir, &book, key(1, 2), None);
    assert_eq!((second.lines[0].seq, second.lines[0].level), (0, LogLevel::Warn));
    assert_eq!(window(&dir, &book, key(1, 1), Some(0)).lines.len(), 1, "after=0 leaves seq 1");
    assert!(window(&dir, &book, key(1, 1), Some(1)).lines.is_empty());

    book.handle_close(key(1, 1));
    assert!(!book.files(key(1, 1)).expect("files stay").open);
    book.handle_line(key(1, 1), 13, LogLevel::Info, "after close", &mut out);
    assert!(out.is_empty(), "a closed attempt logs nothing");
    // An attempt that wrote nothing leaves no entry behind.
    book.handle_open(key(2, 1), 3_000);
    book.handle_close(key(2, 1));
    assert_eq!(book.files(key(2, 1)), None);
    assert_eq!(book.attempts(), 2);
}

#[test]
fn an_attempt_keeps_its_last_64_kib_in_two_segments_and_says_it_was_truncated() {
    let mut book = LogBook::new(TaskLogsConfig::default());
    let mut dir = BTreeMap::new();
    let mut out = Vec::new();
    book.handle_open(key(7, 1), 1);
    let text = "x".repeat(1_000);
    let mut rotations = 0;
    for n in 0..1_000u64 {
        book.handle_line(key(7, 1), n, LogLevel::Info, &text, &mut out);
        rotations += out.iter().filter(|op| matches!(op, FileOp::Rotate { .. })).count();
        apply(&mut dir, std::mem::take(&mut out));
        // Never more than two segments, each within the bound.
        assert!(dir.len() <= 2);
        assert!(dir.values().all(|bytes| bytes.len() <= TASK_LOG_ATTEMPT_BYTES_MAX), "at line {n}");
    }
    assert!(rotations >= 10, "{rotations} rotations");
    let served = window(&dir, &book, key(7, 1), None);
    assert!(served.truncated);
    assert_eq!(served.lines.last().map(|line| line.seq), Some(999));
    let served_bytes: usize = served.lines.iter().map(|line| encode_line(line).len()).sum();
    assert!(served_bytes <= TASK_LOG_ATTEMPT_BYTES_MAX);
    // The window is the bound's worth, not just the current segment: a line more would not fit.
    assert!(served_bytes + encode_line(&served.lines[0]).len() > TASK_LOG_ATTEMPT_BYTES_MAX);
    let numbers: Vec<u64> = served.lines.iter().map(|line| line.seq).collect();
    assert!(numbers.windows(2).all(|pair| pair[1] == pair[0] + 1), "consecutive");
    // Accounting: two full segments, in whole blocks.
    let on_disk: u64 = dir.values().map(|bytes| blocks(bytes.len() as u64)).sum();
    assert_eq!(book.accounted_bytes(), on_disk);
    assert!(on_disk <= 2 * TASK_LOG_ATTEMPT_BYTES_MAX as u64);
}

#[test]
fn long_texts_are_cut_at_a_character_boundary_with_a_marker() {
    assert!(matches!(cut_text("short"), Cow::Borrowed("short")));
    let exact = "y".repeat(TASK_LOG_TEXT_BYTES_MAX);
    assert_eq!(cut_text(&exact).len(), TASK_LOG_TEXT_BYTES_MAX);
    let long = "é".repeat(TASK_LOG_TEXT_BYTES_MAX);
    let cut = cut_text(&long);
    assert!(cut.len() <= TASK_LOG_TEXT_BYTES_MAX, "{}", cut.len());
    assert!(cut.ends_with("more bytes cut]"), "{}", &cut[cut.len() - 40..]);
    let kept = cut.find(" [...").expect("marker");
    assert_eq!(cut[kept..], cut_marker(long.len() - kept));
    // The worst case for storage: every byte escaped.
    let control = "\u{1}".repeat(TASK_LOG_TEXT_BYTES_MAX * 2);
    let line = LogLine { seq: u64::MAX, ts_ms: u64::MAX, level: LogLevel::Trace, text: cut_text(&control).into() };
    assert!(encode_line(&line).len() <= TASK_LOG_LINE_BYTES_MAX);
}

#[test]
fn parsing_takes_whole_lines_only_and_skips_damage() {
    let line = |seq| encode_line(&LogLine { seq, ts_ms: 1, level: LogLevel::Info, text: format!("l{seq}") });
    let mut bytes = line(0);
    bytes.extend(b"not json\n");
    bytes.extend(line(1));
    bytes.extend(vec![b'{'; TASK_LOG_LINE_BYTES_MAX + 10]);
    bytes.push(b'\n');
    bytes.extend(line(2));
    // A torn line at the end (a process killed mid-write) is not a line.
    let torn = line(3);
    bytes.extend(&torn[..torn.len() - 5]);
    let parsed: Vec<u64> = parse_lines(&bytes).iter().map(|(line, _)| line.seq).collect();
    assert_eq!(parsed, [0, 1, 2]);
    assert_eq!(parse_lines(&bytes)[0].1, line(0).len());
    assert_eq!(recovered_seq(&[], &bytes), (3, true));
    assert_eq!(recovered_seq(&line(4), &[]), (5, false));
    assert_eq!(recovered_seq(&[], &[]), (0, false));
}

#[test]
fn segment_names_round_trip_and_other_files_are_ignored() {
    let attempt = key(42, 3);
    for segment in [Segment::Current, Segment::Previous] {
        let name = segment_name(attempt, 1_700_000_000_000, segment);
        assert_eq!(parse_segment_name(&name), Some((attempt, 1_700_000_000_000, segment)));
    }
    for other in ["42-3.log", "42-3-1-1.log", "x-3-1.log", "42-3-1.log.2", "042-3-1.log", "42-3-1.txt", ""] {
        assert_eq!(parse_segment_name(other), None, "{other}");
    }
    let mut book = LogBook::new(TaskLogsConfig::default());
    let mut out = Vec::new();
    assert!(!book.on_found("audit.jsonl", 10, &mut out));
    assert!(book.on_found("42-3-100.log", 10, &mut out));
    assert!(book.on_found("42-3-100.log.1", 5_000, &mut out));
    assert_eq!(book.accounted_bytes(), 4_096 + 8_192);
    // A second start time for the same attempt: the older files go.
    assert!(book.on_found("42-3-50.log", 10, &mut out));
    assert_eq!(out, [FileOp::Delete { name: "42-3-50.log".into() }]);
    out.clear();
    assert!(book.on_found("42-3-200.log", 7, &mut out));
    assert_eq!(out, [FileOp::Delete { name: "42-3-100.log".into() }, FileOp::Delete { name: "42-3-100.log.1".into() }]);
    assert_eq!(book.accounted_bytes(), 4_096);
}

#[test]
fn a_reopened_attempt_continues_its_numbering_after_a_torn_line() {
    let mut book = LogBook::new(TaskLogsConfig::default());
    let mut out = Vec::new();
    book.on_found("9-1-100.log", 50, &mut out);
    let files = book.handle_open(key(9, 1), 5_000).expect("its files must be read first");
    assert_eq!((files.current.as_str(), files.open), ("9-1-100.log", true));
    book.on_recovered(key(9, 1), 12, true, &mut out);
    assert_eq!(out, [FileOp::Append { name: "9-1-100.log".into(), bytes: b"\n".to_vec() }]);
    out.clear();
    book.handle_line(key(9, 1), 6_000, LogLevel::Info, "again", &mut out);
    let FileOp::Append { bytes, .. } = &out[0] else { panic!("{out:?}") };
    assert_eq!(parse_lines(bytes)[0].0.seq, 12);
}

#[test]
fn retention_deletes_old_then_oldest_ended_attempts_and_never_running_ones() {
    const DAY: u64 = 86_400_000;
    let mut book = LogBook::new(config(40 * 4_096, 7 * DAY));
    let mut out = Vec::new();
    // Ten ended attempts of one block each, started a day apart, and a running one from day 0.
    for day in 0..10u64 {
        book.on_found(&segment_name(key(day + 1, 1), day * DAY, Segment::Current), 100, &mut out);
    }
    book.handle_open(key(100, 1), 0);
    book.handle_line(key(100, 1), 0, LogLevel::Info, "running", &mut out);
    out.clear();
    assert_eq!(book.accounted_bytes(), 11 * 4_096);
    // On day 10, attempts that started on days 0..=3 are 7 days old or more.
    assert_eq!(book.handle_retention(10 * DAY, &mut out), 4);
    let deleted: Vec<&str> = out
        .iter()
        .filter_map(|op| match op {
            FileOp::Delete { name } if name.ends_with(".log") => Some(name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ["1-1-0.log", "2-1-86400000.log", "3-1-172800000.log", "4-1-259200000.log"]);
    assert!(book.files(key(100, 1)).is_some(), "a running attempt stays, however old");
    assert_eq!(book.accounted_bytes(), 7 * 4_096);
    out.clear();

    // Over budget: the oldest ended attempts go until 90% of it, the running one stays.
    let mut small = LogBook::new(config(10 * 4_096, 365 * DAY));
    for n in 0..12u64 {
        small.on_found(&segment_name(key(n + 1, 1), n, Segment::Current), 4_096, &mut out);
    }
    small.handle_open(key(99, 1), 0);
    small.handle_line(key(99, 1), 0, LogLevel::Info, "running", &mut out);
    out.clear();
    assert!(small.over_budget());
    assert_eq!(small.handle_retention(100, &mut out), 4, "13 blocks down to 9 (90% of 10)");
    assert_eq!(small.accounted_bytes(), 9 * 4_096);
    assert!(!small.over_budget());
    for gone in 1..=4 {
        assert_eq!(small.files(key(gone, 1)), None, "oldest first");
    }
    assert!(small.files(key(5, 1)).is_some() && small.files(key(99, 1)).is_some());
    out.clear();
    assert_eq!(small.handle_retention(200, &mut out), 0, "within budget and age: nothing to do");
    assert!(out.is_empty());
}

#[test]
fn sizes_and_ages_parse_with_units_within_their_ranges() {
    assert_eq!(TaskLogsConfig::parse_bytes("256MiB"), Ok(256 << 20));
    assert_eq!(TaskLogsConfig::parse_bytes("2G"), Ok(2 << 30));
    assert_eq!(TaskLogsConfig::parse_bytes("1048576"), Ok(1 << 20));
    assert_eq!(TaskLogsConfig::parse_bytes(" 64 MiB "), Ok(64 << 20));
    for bad in ["", "MiB", "12 parsecs", "-1", "1KiB", "99999999999999999999", "1000000000000G"] {
        assert!(TaskLogsConfig::parse_bytes(bad).is_err(), "{bad}");
    }
    assert_eq!(TaskLogsConfig::parse_age_ms("7d"), Ok(7 * 86_400_000));
    assert_eq!(TaskLogsConfig::parse_age_ms("90m"), Ok(90 * 60_000));
    assert_eq!(TaskLogsConfig::parse_age_ms("60000ms"), Ok(60_000));
    for bad in ["7", "1s", "400d", "d", "1w", "99999999999999999999d"] {
        assert!(TaskLogsConfig::parse_age_ms(bad).is_err(), "{bad}");
    }
    assert_eq!(TaskLogsConfig::default(), config(256 << 20, 7 * 86_400_000));
}
