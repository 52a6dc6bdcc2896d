//! Jute, ZooKeeper's record encoding: the primitives every ZooKeeper record is made of.
//!
//! An `int` is an `i32` and a `long` an `i64`, both big-endian; a `boolean` is one byte (ZooKeeper
//! writes 0 or 1 and reads any non-zero byte as true); a `buffer` and a `ustring` are an `i32`
//! length followed by that many bytes (UTF-8 for a `ustring`), where -1 means null; a `vector` is
//! an `i32` count followed by that many elements, where -1 means null. Records are their fields in
//! order, with nothing in between.
//!
//! This module owns the primitives and nothing else: which records exist and how they nest is
//! `proto/`, framing is `frame.rs`. It does no I/O.
//!
//! Invariant: a [`Reader`] never panics and never allocates more than the bytes it was given can
//! justify. Every length and count is checked against the bytes remaining before anything is
//! allocated: a buffer needs its length in bytes, and every vector element needs at least one byte,
//! so a count of 2^31-1 with four bytes left fails at once.

/// Why bytes did not decode as a jute record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JuteError {
    /// The record ends before its last field.
    #[error("record truncated: it ends before its last field")]
    Truncated,
    /// A length or count below -1 (only -1, null, may be negative).
    #[error("negative length or count {0} (only -1, null, is allowed)")]
    NegativeLength(i32),
    /// A length or count larger than the bytes left could hold.
    #[error("length or count {len} exceeds the {remaining} bytes left in the record")]
    TooLong {
        /// The length or count announced.
        len: i32,
        /// Bytes left after it.
        remaining: usize,
    },
    /// A `ustring` that is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    BadUtf8,
    /// Bytes left after a record that must end its input.
    #[error("{0} unexpected bytes after the end of the record")]
    TrailingBytes(usize),
    /// A well-formed field whose value the record does not allow (an op type in a multi, say).
    #[error("unexpected {field} {value}")]
    UnexpectedValue {
        /// What the field is.
        field: &'static str,
        /// The value found.
        value: i64,
    },
}

/// Elements a vector is given room for up front, whatever its count says: the rest grows as
/// elements actually decode, so memory follows the bytes read, not the count announced.
const VEC_PREALLOCATED_MAX: usize = 64;

/// Reads jute primitives from the front of a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`, positioned at the first.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The bytes not read yet, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Checks that every byte has been read.
    ///
    /// # Errors
    /// [`JuteError::TrailingBytes`] if some are left.
    pub fn finish(self) -> Result<(), JuteError> {
        match self.rest.len() {
            0 => Ok(()),
            left => Err(JuteError::TrailingBytes(left)),
        }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], JuteError> {
        if len > self.rest.len() {
            return Err(JuteError::Truncated);
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], JuteError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    /// Reads an `int`.
    ///
    /// # Errors
    /// [`JuteError::Truncated`] if fewer than 4 bytes are left.
    pub fn read_int(&mut self) -> Result<i32, JuteError> {
        Ok(i32::from_be_bytes(self.take_array()?))
    }

    /// Reads a `long`.
    ///
    /// # Errors
    /// [`JuteError::Truncated`] if fewer than 8 bytes are left.
    pub fn read_long(&mut self) -> Result<i64, JuteError> {
        Ok(i64::from_be_bytes(self.take_array()?))
    }

    /// Reads a `boolean`: any non-zero byte is true, as Java's `DataInput.readBoolean` reads it.
    ///
    /// # Errors
    /// [`JuteError::Truncated`] if no byte is left.
    pub fn read_bool(&mut self) -> Result<bool, JuteError> {
        let [byte] = self.take_array()?;
        Ok(byte != 0)
    }

    /// Reads a length or count: `None` for -1 (null), otherwise a value at most `remaining()` (the
    /// caller's elements take at least a byte each).
    fn read_len(&mut self) -> Result<Option<usize>, JuteError> {
        let len = self.read_int()?;
        if len == -1 {
            return Ok(None);
        }
        let Ok(len_bytes) = usize::try_from(len) else {
            return Err(JuteError::NegativeLength(len));
        };
        if len_bytes > self.rest.len() {
            return Err(JuteError::TooLong { len, remaining: self.rest.len() });
        }
        Ok(Some(len_bytes))
    }

    /// Reads a `buffer`; null reads as empty.
    ///
    /// # Errors
    /// [`JuteError::NegativeLength`], [`JuteError::TooLong`] or [`JuteError::Truncated`].
    pub fn read_buffer(&mut self) -> Result<Vec<u8>, JuteError> {
        Ok(self.read_buffer_slice()?.to_vec())
    }

    /// Reads a `buffer` without copying it; null reads as empty.
    ///
    /// # Errors
    /// As [`Reader::read_buffer`].
    pub fn read_buffer_slice(&mut self) -> Result<&'a [u8], JuteError> {
        match self.read_len()? {
            None => Ok(&[]),
            Some(len) => self.take(len),
        }
    }

    /// Reads a `ustring`; null reads as empty (use [`Reader::read_ustring_opt`] to tell them apart).
    ///
    /// # Errors
    /// As [`Reader::read_buffer`], and [`JuteError::BadUtf8`].
    pub fn read_ustring(&mut self) -> Result<String, JuteError> {
        Ok(self.read_ustring_opt()?.unwrap_or_default())
    }

    /// Reads a `ustring`, `None` when it is null.
    ///
    /// # Errors
    /// As [`Reader::read_ustring`].
    pub fn read_ustring_opt(&mut self) -> Result<Option<String>, JuteError> {
        match self.read_len()? {
            None => Ok(None),
            Some(len) => {
                let bytes = self.take(len)?;
                let text = std::str::from_utf8(bytes).map_err(|_| JuteError::BadUtf8)?;
                Ok(Some(text.to_owned()))
            }
        }
    }

    /// Reads a `vector` whose elements `read_element` reads; null reads as empty.
    ///
    /// The count is bounded by the bytes left (an element takes at least one byte) before anything
    /// is allocated, and only a few elements are given room up front.
    ///
    /// # Errors
    /// As [`Reader::read_buffer`] for the count, and whatever `read_element` returns.
    pub fn read_vec<T>(
        &mut self,
        mut read_element: impl FnMut(&mut Reader<'a>) -> Result<T, JuteError>,
    ) -> Result<Vec<T>, JuteError> {
        let count = self.read_len()?.unwrap_or(0);
        let mut elements = Vec::with_capacity(count.min(VEC_PREALLOCATED_MAX));
        for _ in 0..count {
            elements.push(read_element(self)?);
        }
        Ok(elements)
    }
}

/// Writes jute primitives to the end of a byte vector.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer::default()
    }

    /// A writer that appends to `bytes`.
    pub fn from_bytes(bytes: Vec<u8>) -> Writer {
        Writer { bytes }
    }

    /// Bytes written so far (including any the writer started with).
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The bytes written.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Writes an `int`.
    pub fn write_int(&mut self, value: i32) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// Writes a `long`.
    pub fn write_long(&mut self, value: i64) {
        self.bytes.extend_from_slice(&value.to_be_bytes());
    }

    /// Writes a `boolean` as 0 or 1.
    pub fn write_bool(&mut self, value: bool) {
        self.bytes.push(u8::from(value));
    }

    /// Writes a length or count.
    ///
    /// # Panics
    /// If `len` exceeds `i32::MAX`: every value the codec writes is bounded far below 2 GiB by
    /// the limits on what comes in, so a larger one is a programmer error.
    fn write_len(&mut self, len: usize) {
        let len = i32::try_from(len).expect("jute lengths fit in an i32: every value written is bounded below 2 GiB");
        self.write_int(len);
    }

    /// Writes a null `buffer`, `ustring` or `vector` (length -1).
    pub fn write_null(&mut self) {
        self.write_int(-1);
    }

    /// Writes a `buffer`.
    ///
    /// # Panics
    /// If `value` is 2 GiB or longer (see [`Writer::write_len`]).
    pub fn write_buffer(&mut self, value: &[u8]) {
        self.write_len(value.len());
        self.bytes.extend_from_slice(value);
    }

    /// Writes a `ustring`.
    ///
    /// # Panics
    /// As [`Writer::write_buffer`].
    pub fn write_ustring(&mut self, value: &str) {
        self.write_buffer(value.as_bytes());
    }

    /// Writes a `vector` whose elements `write_element` writes.
    ///
    /// # Panics
    /// If `elements` has 2^31 or more elements.
    pub fn write_vec<T>(&mut self, elements: &[T], mut write_element: impl FnMut(&mut Writer, &T)) {
        self.write_len(elements.len());
        for element in elements {
            write_element(self, element);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn primitives_are_big_endian_and_lengths_prefixed() {
        let mut w = Writer::new();
        w.write_int(0x0102_0304);
        w.write_long(-2);
        w.write_bool(true);
        w.write_buffer(b"ab");
        w.write_ustring("é");
        w.write_null();
        w.write_vec(&[7i32, 8], |w, v| w.write_int(*v));
        let expected: Vec<u8> = [
            &[1u8, 2, 3, 4][..],
            &[0xff; 7],
            &[0xfe],
            &[1],
            &[0, 0, 0, 2, b'a', b'b'],
            &[0, 0, 0, 2, 0xc3, 0xa9],
            &[0xff, 0xff, 0xff, 0xff],
            &[0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 8],
        ]
        .concat();
        assert_eq!(w.into_bytes(), expected);

        let mut r = Reader::new(&expected);
        assert_eq!(r.read_int(), Ok(0x0102_0304));
        assert_eq!(r.read_long(), Ok(-2));
        assert_eq!(r.read_bool(), Ok(true));
        assert_eq!(r.read_buffer(), Ok(b"ab".to_vec()));
        assert_eq!(r.read_ustring(), Ok("é".to_string()));
        assert_eq!(r.read_ustring_opt(), Ok(None));
        assert_eq!(r.read_vec(|r| r.read_int()), Ok(vec![7, 8]));
        assert!(r.is_empty());
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn nulls_read_as_empty_and_any_nonzero_byte_is_true() {
        let null = (-1i32).to_be_bytes();
        assert_eq!(Reader::new(&null).read_buffer(), Ok(Vec::new()));
        assert_eq!(Reader::new(&null).read_ustring(), Ok(String::new()));
        assert_eq!(Reader::new(&null).read_vec(|r| r.read_int()), Ok(Vec::new()));
        assert_eq!(Reader::new(&[0x80]).read_bool(), Ok(true));
        assert_eq!(Reader::new(&[0]).read_bool(), Ok(false));
    }

    #[test]
    fn bad_lengths_and_text_are_errors() {
        assert_eq!(Reader::new(&(-2i32).to_be_bytes()).read_buffer(), Err(JuteError::NegativeLength(-2)));
        let mut bytes = 5i32.to_be_bytes().to_vec();
        bytes.extend_from_slice(b"abcd");
        assert_eq!(Reader::new(&bytes).read_buffer(), Err(JuteError::TooLong { len: 5, remaining: 4 }));
        let bad = [0, 0, 0, 2, 0xc3, 0x28];
        assert_eq!(Reader::new(&bad).read_ustring(), Err(JuteError::BadUtf8));
        assert_eq!(Reader::new(&[0, 0, 0]).read_int(), Err(JuteError::Truncated));
        assert_eq!(Reader::new(&[1]).finish(), Err(JuteError::TrailingBytes(1)));
    }

    #[test]
    fn a_huge_count_fails_before_allocating() {
        let mut bytes = i32::MAX.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        let mut calls = 0;
        let result = Reader::new(&bytes).read_vec(|r| {
            calls += 1;
            r.read_int()
        });
        assert_eq!(result, Err(JuteError::TooLong { len: i32::MAX, remaining: 4 }));
        assert_eq!(calls, 0);
        // A count the bytes can hold but the elements cannot fill fails on the first short element.
        let mut bytes = 4i32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 0, 0, 1]);
        assert_eq!(Reader::new(&bytes).read_vec(|r| r.read_int()), Err(JuteError::Truncated));
    }

    proptest! {
        #[test]
        fn primitives_round_trip(
            int in any::<i32>(),
            long in any::<i64>(),
            flag in any::<bool>(),
            buffer in proptest::collection::vec(any::<u8>(), 0..64),
            text in ".{0,32}",
            list in proptest::collection::vec(".{0,8}", 0..8),
        ) {
            let mut w = Writer::new();
            w.write_int(int);
            w.write_long(long);
            w.write_bool(flag);
            w.write_buffer(&buffer);
            w.write_ustring(&text);
            w.write_vec(&list, |w, s| w.write_ustring(s));
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(r.read_int(), Ok(int));
            prop_assert_eq!(r.read_long(), Ok(long));
            prop_assert_eq!(r.read_bool(), Ok(flag));
            prop_assert_eq!(r.read_buffer(), Ok(buffer));
            prop_assert_eq!(r.read_ustring(), Ok(text));
            prop_assert_eq!(r.read_vec(|r| r.read_ustring()), Ok(list));
            prop_assert_eq!(r.finish(), Ok(()));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = r.read_vec(|r| Ok((r.read_ustring()?, r.read_buffer()?, r.read_bool()?)));
        }
    }
}
