//! ZooKeeper's client framing: every packet, both ways, is a 4-byte big-endian signed length and then
//! that many bytes. Also the four-letter words (`ruok`, `srvr`, ...) that a connection may send
//! instead of a first length.
//!
//! This module cuts frames out of bytes already read and builds frames to write; it does no I/O and
//! keeps no state. A frame's length is checked against the caller's bound as soon as its header is
//! in, before the body is waited for or anything is allocated.

use super::jute::Writer;

/// Bytes of a frame's length header.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Why a frame header is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The announced body is larger than the bound.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// Bytes announced.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The announced length is negative.
    #[error("negative frame length {0}")]
    Negative(i32),
}

/// The first whole frame at the front of `buf`: how many bytes it takes (header included) and its
/// body. `Ok(None)` when more bytes are needed.
///
/// # Errors
/// [`FrameError::Negative`] or [`FrameError::TooLong`] (body longer than `max`) as soon as the
/// header is in; the connection cannot be resynchronised after either.
pub fn next_frame(buf: &[u8], max: usize) -> Result<Option<(usize, &[u8])>, FrameError> {
    let Some((header, rest)) = buf.split_first_chunk::<FRAME_HEADER_BYTES>() else {
        return Ok(None);
    };
    let announced = i32::from_be_bytes(*header);
    let len = usize::try_from(announced).map_err(|_| FrameError::Negative(announced))?;
    if len > max {
        return Err(FrameError::TooLong { len, max });
    }
    Ok(rest.get(..len).map(|body| (FRAME_HEADER_BYTES + len, body)))
}

/// Appends `body` to `out` as one frame.
///
/// # Panics
/// If `body` is 2 GiB or longer: everything the codec frames is bounded far below that.
pub fn write_frame(out: &mut Vec<u8>, body: &[u8]) {
    let len = i32::try_from(body.len()).expect("frame bodies are bounded below 2 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
}

/// One frame whose body `write_body` writes: the header is reserved first and filled in after, so
/// the body is never copied.
///
/// # Panics
/// As [`write_frame`].
pub fn framed(write_body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut writer = Writer::from_bytes(vec![0; FRAME_HEADER_BYTES]);
    write_body(&mut writer);
    let mut bytes = writer.into_bytes();
    let len = i32::try_from(bytes.len() - FRAME_HEADER_BYTES).expect("frame bodies are bounded below 2 GiB");
    bytes[..FRAME_HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
    bytes
}

/// A four-letter word: an admin command a client sends as the first four bytes of a connection in
/// place of a frame length. ZooKeeper answers it with text and closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FourLetterWord {
    /// `ruok`: is the server running (answer `imok`)?
    Ruok,
    /// `stat`: server summary and connections.
    Stat,
    /// `srvr`: server summary.
    Srvr,
    /// `conf`: configuration.
    Conf,
    /// `cons`: connections in detail.
    Cons,
    /// `crst`: reset connection statistics.
    Crst,
    /// `dump`: sessions and their ephemeral nodes.
    Dump,
    /// `envi`: environment.
    Envi,
    /// `gtmk`: get the trace mask.
    Gtmk,
    /// `stmk`: set the trace mask (an 8-byte mask follows the word).
    Stmk,
    /// `isro`: is the server read-only (`ro`/`rw`)?
    Isro,
    /// `mntr`: metrics as tab-separated lines.
    Mntr,
    /// `srst`: reset server statistics.
    Srst,
    /// `wchc`: watches by session.
    Wchc,
    /// `wchp`: watches by path.
    Wchp,
    /// `wchs`: watch summary.
    Wchs,
    /// `dirs`: data and log directory sizes.
    Dirs,
    /// `hash`: digests of the tree.
    Hash,
}

impl FourLetterWord {
    /// Every word, in ZooKeeper's documentation order.
    pub const ALL: [FourLetterWord; 18] = [
        FourLetterWord::Conf,
        FourLetterWord::Cons,
        FourLetterWord::Crst,
        FourLetterWord::Dump,
        FourLetterWord::Envi,
        FourLetterWord::Ruok,
        FourLetterWord::Srst,
        FourLetterWord::Srvr,
        FourLetterWord::Stat,
        FourLetterWord::Wchs,
        FourLetterWord::Wchc,
        FourLetterWord::Dirs,
        FourLetterWord::Wchp,
        FourLetterWord::Mntr,
        FourLetterWord::Isro,
        FourLetterWord::Gtmk,
        FourLetterWord::Stmk,
        FourLetterWord::Hash,
    ];

    /// The word a connection's first four bytes spell, if they spell a known one (lower case, as
    /// ZooKeeper matches them). Any other four bytes are a frame length.
    pub fn parse(first4: [u8; 4]) -> Option<FourLetterWord> {
        FourLetterWord::ALL.into_iter().find(|word| word.as_str().as_bytes() == first4)
    }

    /// The word as sent.
    pub fn as_str(self) -> &'static str {
        match self {
            FourLetterWord::Ruok => "ruok",
            FourLetterWord::Stat => "stat",
            FourLetterWord::Srvr => "srvr",
            FourLetterWord::Conf => "conf",
            FourLetterWord::Cons => "cons",
            FourLetterWord::Crst => "crst",
            FourLetterWord::Dump => "dump",
            FourLetterWord::Envi => "envi",
            FourLetterWord::Gtmk => "gtmk",
            FourLetterWord::Stmk => "stmk",
            FourLetterWord::Isro => "isro",
            FourLetterWord::Mntr => "mntr",
            FourLetterWord::Srst => "srst",
            FourLetterWord::Wchc => "wchc",
            FourLetterWord::Wchp => "wchp",
            FourLetterWord::Wchs => "wchs",
            FourLetterWord::Dirs => "dirs",
            FourLetterWord::Hash => "hash",
        }
    }
}

impl std::fmt::Display for FourLetterWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_only_when_whole() {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, b"abc");
        write_frame(&mut bytes, b"");
        assert_eq!(bytes, [0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0]);
        for cut in 0..7 {
            assert_eq!(next_frame(&bytes[..cut], 16), Ok(None), "prefix of {cut} bytes");
        }
        assert_eq!(next_frame(&bytes, 16), Ok(Some((7, &b"abc"[..]))));
        assert_eq!(next_frame(&bytes[7..], 16), Ok(Some((4, &b""[..]))));
    }

    #[test]
    fn bad_lengths_are_refused_as_soon_as_the_header_is_in() {
        assert_eq!(next_frame(&[0, 0, 0, 17], 16), Err(FrameError::TooLong { len: 17, max: 16 }));
        assert_eq!(next_frame(&[0xff, 0xff, 0xff, 0xfe], 16), Err(FrameError::Negative(-2)));
        assert_eq!(next_frame(&[0x7f, 0xff, 0xff, 0xff], usize::MAX), Ok(None));
        assert_eq!(next_frame(&[0, 0, 0, 16], 16), Ok(None));
    }

    #[test]
    fn framed_patches_the_header() {
        let frame = framed(|w| {
            w.write_int(-1);
            w.write_bool(true);
        });
        assert_eq!(frame, [0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff, 1]);
        assert_eq!(framed(|_| {}), [0, 0, 0, 0]);
    }

    #[test]
    fn four_letter_words_are_known_words_only() {
        for word in FourLetterWord::ALL {
            let bytes: [u8; 4] = word.as_str().as_bytes().try_into().expect("four letters");
            assert_eq!(FourLetterWord::parse(bytes), Some(word));
        }
        assert_eq!(FourLetterWord::parse(*b"ruok"), Some(FourLetterWord::Ruok));
        assert_eq!(FourLetterWord::parse(*b"RUOK"), None);
        assert_eq!(FourLetterWord::parse(*b"nope"), None);
        assert_eq!(FourLetterWord::parse([0, 0, 0, 44]), None);
        let distinct: std::collections::BTreeSet<_> = FourLetterWord::ALL.iter().map(|w| w.as_str()).collect();
        assert_eq!(distinct.len(), FourLetterWord::ALL.len());
    }
}
