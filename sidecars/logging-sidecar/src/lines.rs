//! Splitting a chunk read from a file into lines: the tailer's plain logic.
//!
//! The tailer reads large chunks and hands them on whole; a line is a span of that chunk
//! plus the file offset where it starts (the basis of its `event_id`). Only complete lines
//! are taken: the bytes after the last newline stay in the file and are read again with
//! the next chunk, so a partial line waits for its newline. Two exceptions keep a
//! reader from waiting forever: a line longer than the maximum is cut at the maximum
//! (and the rest of it, up to its newline, skipped), and an unterminated last line that
//! has sat at the end of the file past the partial-line timeout is taken as it is.
//!
//! A chunk gives at most [`MAX_LINES_PER_CHUNK`] lines: the line table costs 24 bytes a
//! line, so without a cap a chunk of empty lines would cost 24 times its own size (3 MiB
//! for the default 128 KiB, 24 MiB with `READ_CHUNK_BYTES=1MiB`). The lines after the
//! cap stay in the file and start the next chunk.

use memchr::memchr_iter;

/// Lines taken from one chunk at most: a 192 KiB line table. A chunk of ordinary lines
/// (over 16 bytes on average) never reaches it.
pub const MAX_LINES_PER_CHUNK: usize = 8192;

/// One line inside a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// Start of the line within the chunk.
    pub start: u32,
    /// Length without the newline (and without a trailing `\r`).
    pub len: u32,
    /// File offset of the line's first byte.
    pub offset: u64,
    /// The line was longer than the maximum and was cut.
    pub truncated: bool,
}

/// What a chunk gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub lines: Vec<Line>,
    /// Bytes of the chunk taken (lines, their newlines and skipped bytes).
    pub consumed: usize,
    /// The reader is inside an over-long line whose rest must be skipped.
    pub skipping: bool,
}

/// Splits `chunk`, read at file offset `offset`.
///
/// `skipping` says the chunk starts inside an over-long line already cut; `flush_partial`
/// takes an unterminated tail as a line (the partial-line timeout expired at end of file).
/// Stops after [`MAX_LINES_PER_CHUNK`] lines; `consumed` then ends with the last of them.
pub fn split(
    chunk: &[u8],
    offset: u64,
    max_line_bytes: usize,
    mut skipping: bool,
    flush_partial: bool,
) -> Split {
    let mut lines = Vec::with_capacity((chunk.len() / 128 + 1).min(MAX_LINES_PER_CHUNK));
    let mut start = 0usize;
    for nl in memchr_iter(b'\n', chunk) {
        if skipping {
            skipping = false;
        } else {
            lines.push(make_line(chunk, start, nl, offset, max_line_bytes));
        }
        start = nl + 1;
        if lines.len() == MAX_LINES_PER_CHUNK {
            return Split {
                lines,
                consumed: start,
                skipping: false,
            };
        }
    }
    let tail = chunk.len() - start;
    let mut consumed = start;
    if tail > 0 {
        if skipping {
            consumed = chunk.len();
        } else if tail > max_line_bytes {
            lines.push(make_line(chunk, start, chunk.len(), offset, max_line_bytes));
            consumed = chunk.len();
            skipping = true;
        } else if flush_partial {
            lines.push(make_line(chunk, start, chunk.len(), offset, max_line_bytes));
            consumed = chunk.len();
        }
    }
    Split {
        lines,
        consumed,
        skipping,
    }
}

fn make_line(chunk: &[u8], start: usize, end: usize, offset: u64, max: usize) -> Line {
    let mut len = end - start;
    if len > 0 && chunk[start + len - 1] == b'\r' {
        len -= 1;
    }
    let truncated = len > max;
    Line {
        start: start as u32,
        len: len.min(max) as u32,
        offset: offset + start as u64,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(chunk: &'a [u8], s: &Split) -> Vec<&'a [u8]> {
        s.lines
            .iter()
            .map(|l| &chunk[l.start as usize..(l.start + l.len) as usize])
            .collect()
    }

    #[test]
    fn complete_lines_are_taken_and_the_tail_waits() {
        let chunk = b"one\ntwo\r\nthr";
        let s = split(chunk, 100, 1024, false, false);
        assert_eq!(texts(chunk, &s), [&b"one"[..], b"two"]);
        assert_eq!(s.consumed, 9);
        assert_eq!(s.lines[1].offset, 104);
        assert!(!s.skipping);
    }

    #[test]
    fn a_partial_tail_is_flushed_on_request() {
        let chunk = b"one\nthr";
        let s = split(chunk, 0, 1024, false, true);
        assert_eq!(texts(chunk, &s), [&b"one"[..], b"thr"]);
        assert_eq!(s.consumed, 7);
    }

    #[test]
    fn over_long_lines_are_cut_and_their_rest_skipped() {
        let chunk = b"abcdefghij\nok\nxyzxyzxyzxyz";
        let s = split(chunk, 0, 4, false, false);
        assert_eq!(texts(chunk, &s), [&b"abcd"[..], b"ok", b"xyzx"]);
        assert!(s.lines[0].truncated && !s.lines[1].truncated && s.lines[2].truncated);
        assert_eq!(s.consumed, chunk.len());
        assert!(s.skipping);
        // The next chunk starts inside the cut line: its rest is skipped.
        let next = b"rest\nnext\n";
        let s = split(next, 26, 4, true, false);
        assert_eq!(texts(next, &s), [&b"next"[..]]);
        assert_eq!(s.lines[0].offset, 31);
        assert!(!s.skipping);
    }

    #[test]
    fn a_chunk_of_tiny_lines_stops_at_the_line_cap() {
        let chunk = b"\n".repeat(MAX_LINES_PER_CHUNK * 2 + 3);
        let s = split(&chunk, 1000, 8, false, true);
        assert_eq!(s.lines.len(), MAX_LINES_PER_CHUNK);
        assert_eq!(s.consumed, MAX_LINES_PER_CHUNK);
        assert!(!s.skipping);
        // The rest is the next chunk, from where this one stopped.
        let rest = &chunk[s.consumed..];
        let next = split(rest, 1000 + s.consumed as u64, 8, false, true);
        assert_eq!(next.lines.len(), MAX_LINES_PER_CHUNK);
        assert_eq!(next.lines[0].offset, 1000 + MAX_LINES_PER_CHUNK as u64);
        let last = split(&rest[next.consumed..], 0, 8, false, true);
        assert_eq!(last.lines.len(), 3);
        assert_eq!(last.consumed, 3);
    }

    #[test]
    fn the_line_cap_counts_lines_not_the_skipped_rest() {
        // The first newline ends a line being skipped: it is no line of its own.
        let mut chunk = b"rest of a cut line\n".to_vec();
        chunk.extend(b"x\n".repeat(MAX_LINES_PER_CHUNK + 1));
        let s = split(&chunk, 0, 8, true, false);
        assert_eq!(s.lines.len(), MAX_LINES_PER_CHUNK);
        assert_eq!(s.consumed, 19 + 2 * MAX_LINES_PER_CHUNK);
    }

    #[test]
    fn empty_lines_are_lines() {
        let chunk = b"\n\nx\n";
        let s = split(chunk, 0, 8, false, false);
        assert_eq!(texts(chunk, &s), [&b""[..], b"", b"x"]);
    }
}
