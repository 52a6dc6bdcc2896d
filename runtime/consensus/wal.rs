//! The Raft log's files: segments of checksummed frames, appended and fsync'd, never rewritten.
//!
//! A segment (`log-<seq>.wal`, 20 decimal digits) is [`SEGMENT_MAGIC`] followed by frames. A frame is
//! one group commit: `length: u32 LE`, `crc32: u32 LE` (of the length's four bytes and the body), then
//! the body, a sequence of records (truncate, purge, append, set or remove a metadata key). A frame is
//! applied whole or not at all, so a group commit torn by a crash leaves the log as it was before it.
//!
//! Every segment begins with a checkpoint frame: all metadata and the purge mark as they stood when it
//! was opened. So the segments left after deleting the oldest ones are a complete history on their own,
//! and a segment is deleted once every index it appended lies at or below the purge mark.
//!
//! Why not a B-tree file (redb, which held the log until 2026-12-03): each of its commits rewrote about
//! nine pages (tree path, table root, allocator state) and cost 120–135 µs of CPU, against about 40 µs
//! for one append and `fdatasync` here (three committers on this project's 2-vCPU machine). Reads never
//! need the file: [`super::log_store`] keeps the log since the last purge in memory.
//!
//! Invariants: a frame is acknowledged only after it (and everything before it) is fsync'd; a replay
//! stops at the first frame that fails its checksum and, in the newest segment only, cuts the file
//! there (a tear at the tail); anywhere else such a frame is corruption and opening fails.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The first bytes of every segment; the last byte is the format's version.
pub const SEGMENT_MAGIC: [u8; 8] = *b"gkwal\0\0\x01";

/// A segment is closed, and a new one opened, once it holds more than this.
pub const SEGMENT_BYTES_MAX: u64 = 64 << 20;

const FRAME_HEADER: usize = 8;

/// The suffix of a segment while it is being created.
const TEMPORARY: &str = ".tmp";

const TAG_TRUNCATE: u8 = 1;
const TAG_PURGE: u8 = 2;
const TAG_APPEND: u8 = 3;
const TAG_META_SET: u8 = 4;
const TAG_META_REMOVE: u8 = 5;

/// One change to the log, as recorded in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// Entries with index >= this are deleted.
    Truncate(u64),
    /// Entries with index <= this are deleted.
    Purge(u64),
    /// An entry's encoded bytes at an index.
    Append(u64, &'a [u8]),
    /// A metadata key set.
    MetaSet(&'a str, &'a [u8]),
    /// A metadata key removed.
    MetaRemove(&'a str),
}

/// The log and metadata a replay rebuilt.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Image {
    /// Entries by index, after every truncation and purge.
    pub entries: BTreeMap<u64, Vec<u8>>,
    /// Metadata by key.
    pub meta: BTreeMap<String, Vec<u8>>,
    /// The highest index ever purged through, if any.
    pub purged: Option<u64>,
}

impl Image {
    fn apply(&mut self, record: &Record<'_>) {
        match *record {
            Record::Truncate(from) => {
                self.entries.split_off(&from);
            }
            Record::Purge(through) => {
                self.entries = self.entries.split_off(&through.saturating_add(1));
                self.purged = Some(self.purged.map_or(through, |purged| purged.max(through)));
            }
            Record::Append(index, bytes) => {
                self.entries.insert(index, bytes.to_vec());
            }
            Record::MetaSet(key, value) => {
                self.meta.insert(key.to_owned(), value.to_vec());
            }
            Record::MetaRemove(key) => {
                self.meta.remove(key);
            }
        }
    }
}

/// Appends `record` to a frame body.
pub fn encode_record(body: &mut Vec<u8>, record: &Record<'_>) {
    match *record {
        Record::Truncate(from) => {
            body.push(TAG_TRUNCATE);
            body.extend_from_slice(&from.to_le_bytes());
        }
        Record::Purge(through) => {
            body.push(TAG_PURGE);
            body.extend_from_slice(&through.to_le_bytes());
        }
        Record::Append(index, bytes) => {
            body.push(TAG_APPEND);
            body.extend_from_slice(&index.to_le_bytes());
            body.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            body.extend_from_slice(bytes);
        }
        Record::MetaSet(key, value) => {
            body.push(TAG_META_SET);
            body.push(key.len() as u8);
            body.extend_from_slice(key.as_bytes());
            body.extend_from_slice(&(value.len() as u32).to_le_bytes());
            body.extend_from_slice(value);
        }
        Record::MetaRemove(key) => {
            body.push(TAG_META_REMOVE);
            body.push(key.len() as u8);
            body.extend_from_slice(key.as_bytes());
        }
    }
}

/// Starts a frame in `out`: its header is filled in by [`seal_frame`].
pub fn open_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    start
}

/// Fills in the header of the frame begun at `start` in `out`, whose body is everything after it.
pub fn seal_frame(out: &mut [u8], start: usize) {
    let length = (out.len() - start - FRAME_HEADER) as u32;
    out[start..start + 4].copy_from_slice(&length.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&length.to_le_bytes());
    hasher.update(&out[start + FRAME_HEADER..]);
    out[start + 4..start + FRAME_HEADER].copy_from_slice(&hasher.finalize().to_le_bytes());
}

/// Why a frame's body did not parse (it passed its checksum, so this is a bug or a newer format).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a log record does not parse at byte {at} of its frame")]
pub struct RecordError {
    at: usize,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], RecordError> {
        let end =
            self.at.checked_add(count).filter(|end| *end <= self.bytes.len()).ok_or(RecordError { at: self.at })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, RecordError> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        let mut out = [0; 8];
        out.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(out))
    }

    fn key(&mut self) -> Result<&'a str, RecordError> {
        let at = self.at;
        let length = usize::from(self.u8()?);
        std::str::from_utf8(self.take(length)?).map_err(|_| RecordError { at })
    }
}

/// The records of a frame body, in order.
///
/// # Errors
/// [`RecordError`] if the body does not parse.
pub fn decode_records(body: &[u8]) -> Result<Vec<Record<'_>>, RecordError> {
    let mut cursor = Cursor { bytes: body, at: 0 };
    let mut records = Vec::new();
    while cursor.at < body.len() {
        let at = cursor.at;
        let record = match cursor.u8()? {
            TAG_TRUNCATE => Record::Truncate(cursor.u64()?),
            TAG_PURGE => Record::Purge(cursor.u64()?),
            TAG_APPEND => {
                let index = cursor.u64()?;
                let length = cursor.u32()? as usize;
                Record::Append(index, cursor.take(length)?)
            }
            TAG_META_SET => {
                let key = cursor.key()?;
                let length = cursor.u32()? as usize;
                Record::MetaSet(key, cursor.take(length)?)
            }
            TAG_META_REMOVE => Record::MetaRemove(cursor.key()?),
            _ => return Err(RecordError { at }),
        };
        records.push(record);
    }
    Ok(records)
}

/// The frames of a segment's bytes after its magic: each body, and where the intact frames end.
/// A frame cut short or failing its checksum ends the walk; what follows it is not looked at.
pub fn frames(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut bodies = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + FRAME_HEADER) {
        let length = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(body) = (at + FRAME_HEADER).checked_add(length).and_then(|end| bytes.get(at + FRAME_HEADER..end))
        else {
            break;
        };
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header[..4]);
        hasher.update(body);
        if hasher.finalize() != crc {
            break;
        }
        bodies.push(body);
        at += FRAME_HEADER + length;
    }
    (bodies, at)
}

/// Why the log's files could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A segment other than the newest is damaged, or one was written by a newer format.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The segment.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.display().to_string(), source }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("log-{seq:020}.wal"))
}

fn segment_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("log-")?.strip_suffix(".wal")?;
    (digits.len() == 20 && digits.bytes().all(|byte| byte.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

/// Makes a directory entry (a created or removed segment) durable.
fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|handle| handle.sync_all()).map_err(io(dir))
}

struct Segment {
    seq: u64,
    /// The highest index appended to it, if any.
    last_appended: Option<u64>,
}

/// The writing end of the log's files: the segments, the newest open for appending.
pub struct Wal {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    file: File,
    size: u64,
    /// The metadata as it stands, for the checkpoint that opens each segment.
    meta: BTreeMap<String, Vec<u8>>,
    purged: Option<u64>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).field("size", &self.size).finish_non_exhaustive()
    }
}

impl Wal {
    /// Replays the segments in `dir` (creating the first if there is none) and opens the newest for
    /// appending. `seed` fills a new log (an import from an older store); it is ignored when segments
    /// exist.
    ///
    /// # Errors
    /// [`WalError`] if a file cannot be read or written, or a segment is damaged other than at the
    /// newest one's tail.
    pub fn open(dir: &Path, seed: Option<&Image>) -> Result<(Wal, Image), WalError> {
        let mut seqs = Vec::new();
        for listed in std::fs::read_dir(dir).map_err(io(dir))? {
            let listed = listed.map_err(io(dir))?;
            let name = listed.file_name();
            let name = name.to_str().unwrap_or_default();
            if let Some(seq) = segment_seq(name) {
                seqs.push(seq);
            } else if name.strip_suffix(TEMPORARY).is_some_and(|segment| segment_seq(segment).is_some()) {
                // A segment being created when the process stopped: never renamed, so never used.
                std::fs::remove_file(listed.path()).map_err(io(&listed.path()))?;
            }
        }
        seqs.sort_unstable();
        if let Some(pair) = seqs.windows(2).find(|pair| pair[1] != pair[0] + 1) {
            return Err(WalError::Corrupt {
                path: segment_path(dir, pair[0] + 1).display().to_string(),
                reason: "a log segment between two others is missing".into(),
            });
        }
        let mut image = Image::default();
        let mut segments = VecDeque::new();
        let mut newest_end = 0;
        for (position, &seq) in seqs.iter().enumerate() {
            let path = segment_path(dir, seq);
            let newest = position + 1 == seqs.len();
            let bytes = std::fs::read(&path).map_err(io(&path))?;
            let corrupt = |reason: String| WalError::Corrupt { path: path.display().to_string(), reason };
            if bytes.len() < SEGMENT_MAGIC.len()
                || bytes[..SEGMENT_MAGIC.len() - 1] != SEGMENT_MAGIC[..SEGMENT_MAGIC.len() - 1]
            {
                return Err(corrupt("not a gridkeeper log segment".into()));
            }
            if bytes[SEGMENT_MAGIC.len() - 1] != SEGMENT_MAGIC[SEGMENT_MAGIC.len() - 1] {
                return Err(corrupt(format!(
                    "log segment format {} is not this build's {}: written by a newer gridkeeper?",
                    bytes[SEGMENT_MAGIC.len() - 1],
                    SEGMENT_MAGIC[SEGMENT_MAGIC.len() - 1]
                )));
            }
            let (bodies, intact) = frames(&bytes[SEGMENT_MAGIC.len()..]);
            if bodies.is_empty() {
                // Every segment is renamed into place only once its checkpoint frame is on disk.
                return Err(corrupt("the segment's checkpoint frame is damaged".into()));
            }
            let end = SEGMENT_MAGIC.len() + intact;
            if end < bytes.len() && !newest {
                return Err(corrupt(format!("a damaged frame at byte {end} of {} in a closed segment", bytes.len())));
            }
            let mut last_appended = None;
            for body in bodies {
                let records = decode_records(body).map_err(|error| corrupt(error.to_string()))?;
                for record in &records {
                    if let Record::Append(index, _) = record {
                        last_appended = Some(last_appended.map_or(*index, |last: u64| last.max(*index)));
                    }
                    image.apply(record);
                }
            }
            segments.push_back(Segment { seq, last_appended });
            newest_end = end as u64;
        }
        if let Some(purged) = image.purged {
            image.entries = image.entries.split_off(&purged.saturating_add(1));
        }
        let Some(newest) = segments.back() else {
            let seed = seed.cloned().unwrap_or_default();
            let mut wal = Wal::create(dir, 1, &seed)?;
            wal.segments.back_mut().expect("just created").last_appended = seed.entries.keys().next_back().copied();
            return Ok((wal, seed));
        };
        let path = segment_path(dir, newest.seq);
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(io(&path))?;
        let on_disk = file.metadata().map_err(io(&path))?.len();
        if on_disk > newest_end {
            // A torn tail: cut it, so new frames follow the last intact one.
            file.set_len(newest_end).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(newest_end)).map_err(io(&path))?;
        let wal = Wal {
            dir: dir.to_owned(),
            segments,
            file,
            size: newest_end,
            meta: image.meta.clone(),
            purged: image.purged,
        };
        Ok((wal, image))
    }

    /// Creates segment `seq` holding the checkpoint of `image` (its metadata, purge mark and entries),
    /// durably, and returns a writer appending to it.
    fn create(dir: &Path, seq: u64, image: &Image) -> Result<Wal, WalError> {
        let path = segment_path(dir, seq);
        let temporary = dir.join(format!("log-{seq:020}.wal{TEMPORARY}"));
        let mut out = SEGMENT_MAGIC.to_vec();
        let start = open_frame(&mut out);
        checkpoint(&mut out, &image.meta, image.purged);
        for (index, bytes) in &image.entries {
            encode_record(&mut out, &Record::Append(*index, bytes));
        }
        seal_frame(&mut out, start);
        // Written whole under a temporary name, then renamed: a segment file always starts with an
        // intact checkpoint.
        let mut file =
            OpenOptions::new().write(true).create(true).truncate(true).open(&temporary).map_err(io(&temporary))?;
        file.write_all(&out).map_err(io(&temporary))?;
        file.sync_all().map_err(io(&temporary))?;
        std::fs::rename(&temporary, &path).map_err(io(&path))?;
        sync_dir(dir)?;
        Ok(Wal {
            dir: dir.to_owned(),
            segments: VecDeque::from([Segment { seq, last_appended: None }]),
            file,
            size: out.len() as u64,
            meta: image.meta.clone(),
            purged: image.purged,
        })
    }

    /// Notes what a frame about to be written changes (metadata, purge mark, appended indexes).
    pub fn note(&mut self, record: &Record<'_>) {
        match *record {
            Record::Append(index, _) => {
                let segment = self.segments.back_mut().expect("a segment is always open");
                segment.last_appended = Some(segment.last_appended.map_or(index, |last| last.max(index)));
            }
            Record::Purge(through) => self.purged = Some(self.purged.map_or(through, |purged| purged.max(through))),
            Record::MetaSet(key, value) => {
                self.meta.insert(key.to_owned(), value.to_vec());
            }
            Record::MetaRemove(key) => {
                self.meta.remove(key);
            }
            Record::Truncate(_) => {}
        }
    }

    /// Writes sealed frames and fsyncs them. Afterwards a full segment is closed and a new one
    /// opened, and segments holding only purged entries are deleted.
    ///
    /// # Errors
    /// [`WalError`] if a write, fsync, creation or deletion fails. The log's state on disk is then
    /// unknown to this writer; the caller must stop using it.
    pub fn write(&mut self, frames: &[u8]) -> Result<(), WalError> {
        let path = segment_path(&self.dir, self.segments.back().expect("a segment is always open").seq);
        self.file.write_all(frames).map_err(io(&path))?;
        self.size += frames.len() as u64;
        self.file.sync_data().map_err(io(&path))?;
        if self.size > SEGMENT_BYTES_MAX {
            self.roll()?;
        }
        self.delete_purged()
    }

    /// Opens the next segment with a checkpoint of the metadata and purge mark.
    fn roll(&mut self) -> Result<(), WalError> {
        let seq = self.segments.back().expect("a segment is always open").seq + 1;
        let image = Image { entries: BTreeMap::new(), meta: self.meta.clone(), purged: self.purged };
        let next = Wal::create(&self.dir, seq, &image)?;
        self.file = next.file;
        self.size = next.size;
        self.segments.extend(next.segments);
        Ok(())
    }

    /// Deletes the oldest closed segments while every index they appended is purged.
    fn delete_purged(&mut self) -> Result<(), WalError> {
        let mut deleted = false;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            if oldest.last_appended.is_some_and(|last| self.purged.is_none_or(|purged| last > purged)) {
                break;
            }
            let path = segment_path(&self.dir, oldest.seq);
            std::fs::remove_file(&path).map_err(io(&path))?;
            self.segments.pop_front();
            deleted = true;
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// How many segment files the log has now.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

/// Records `meta` and the purge mark into an open frame.
fn checkpoint(out: &mut Vec<u8>, meta: &BTreeMap<String, Vec<u8>>, purged: Option<u64>) {
    if let Some(through) = purged {
        encode_record(out, &Record::Purge(through));
    }
    for (key, value) in meta {
        encode_record(out, &Record::MetaSet(key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("gk-wal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    fn frame(records: &[Record<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        let start = open_frame(&mut out);
        for record in records {
            encode_record(&mut out, record);
        }
        seal_frame(&mut out, start);
        out
    }

    fn write(wal: &mut Wal, records: &[Record<'_>]) {
        for record in records {
            wal.note(record);
        }
        wal.write(&frame(records)).expect("write");
    }

    #[test]
    fn records_round_trip_and_a_frame_cut_anywhere_is_dropped_whole() {
        let records = [
            Record::Truncate(7),
            Record::Purge(3),
            Record::Append(9, b"nine"),
            Record::MetaSet("vote", b"v"),
            Record::MetaRemove("old"),
        ];
        let one = frame(&records);
        let (bodies, end) = frames(&one);
        assert_eq!(end, one.len());
        assert_eq!(decode_records(bodies[0]).expect("parse"), records);
        let two = [one.clone(), frame(&[Record::Append(10, b"ten")])].concat();
        for cut in 0..two.len() {
            let (bodies, end) = frames(&two[..cut]);
            let whole = if cut >= two.len() {
                2
            } else if cut >= one.len() {
                1
            } else {
                0
            };
            assert_eq!(bodies.len(), whole, "cut at {cut}");
            assert_eq!(end, [0, one.len()][whole.min(1)]);
        }
    }

    #[test]
    fn a_torn_tail_is_cut_and_writing_goes_on_after_the_last_whole_frame() {
        let dir = temp("torn");
        {
            let (mut wal, image) = Wal::open(&dir, None).expect("open");
            assert_eq!(image, Image::default());
            write(&mut wal, &[Record::Append(1, b"a"), Record::MetaSet("vote", b"v1")]);
            write(&mut wal, &[Record::Append(2, b"b")]);
        }
        let path = segment_path(&dir, 1);
        let full = std::fs::metadata(&path).expect("meta").len();
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.set_len(full - 1).expect("tear");
        drop(file);
        {
            let (mut wal, image) = Wal::open(&dir, None).expect("reopen");
            assert_eq!(image.entries.keys().copied().collect::<Vec<_>>(), vec![1]);
            assert_eq!(image.meta.get("vote").map(Vec::as_slice), Some(&b"v1"[..]));
            write(&mut wal, &[Record::Append(2, b"c")]);
        }
        let (_, image) = Wal::open(&dir, None).expect("reopen");
        assert_eq!(image.entries.get(&2).map(Vec::as_slice), Some(&b"c"[..]));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn full_segments_roll_over_and_purged_ones_are_deleted() {
        let dir = temp("roll");
        let big = vec![5u8; (SEGMENT_BYTES_MAX / 4) as usize];
        {
            let (mut wal, _) = Wal::open(&dir, None).expect("open");
            write(&mut wal, &[Record::MetaSet("vote", b"v1")]);
            for index in 1..=10 {
                write(&mut wal, &[Record::Append(index, &big)]);
            }
            assert!(wal.segment_count() >= 3, "{} segments", wal.segment_count());
            write(&mut wal, &[Record::Purge(8), Record::MetaSet("purged", b"8")]);
            assert!(wal.segment_count() <= 2, "{} segments left", wal.segment_count());
        }
        let (_, image) = Wal::open(&dir, None).expect("reopen");
        assert_eq!(image.entries.keys().copied().collect::<Vec<_>>(), vec![9, 10]);
        assert_eq!(image.meta.get("vote").map(Vec::as_slice), Some(&b"v1"[..]));
        assert_eq!(image.purged, Some(8));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn damage_in_a_closed_segment_or_a_newer_format_refuses_to_open() {
        let dir = temp("damage");
        let big = vec![5u8; (SEGMENT_BYTES_MAX / 2) as usize];
        {
            let (mut wal, _) = Wal::open(&dir, None).expect("open");
            for index in 1..=3 {
                write(&mut wal, &[Record::Append(index, &big)]);
            }
            assert!(wal.segment_count() >= 2);
        }
        let path = segment_path(&dir, 1);
        let mut bytes = std::fs::read(&path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&path, &bytes).expect("damage");
        assert!(matches!(Wal::open(&dir, None), Err(WalError::Corrupt { .. })));
        bytes[middle] ^= 0xff;
        bytes[SEGMENT_MAGIC.len() - 1] = 9;
        std::fs::write(&path, &bytes).expect("newer");
        let refused = Wal::open(&dir, None).expect_err("newer format");
        assert!(refused.to_string().contains("newer gridkeeper"), "{refused}");
        std::fs::remove_dir_all(&dir).ok();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever bytes follow the magic, a replay finds a prefix of whole frames and never panics.
        #[test]
        fn any_bytes_replay_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let (bodies, end) = frames(&bytes);
            prop_assert!(end <= bytes.len());
            for body in bodies {
                let _ = decode_records(body);
            }
        }

        /// A frame with any single bit flipped is never taken for an intact one.
        #[test]
        fn a_flipped_bit_is_caught(index in 0u64..1000, payload in proptest::collection::vec(any::<u8>(), 0..64), bit in 0usize..1000) {
            let one = frame(&[Record::Append(index, &payload), Record::MetaSet("k", &payload)]);
            let mut flipped = one.clone();
            let bit = bit % (one.len() * 8);
            flipped[bit / 8] ^= 1 << (bit % 8);
            let (bodies, _) = frames(&flipped);
            prop_assert!(bodies.is_empty());
        }
    }
}
