//! A chunk of a log file, as the logging sidecar's tailer splits it into lines: the
//! first bytes pick the longest line kept and the flags, the rest is the chunk.
//!
//! Checked: no panic; every line lies inside the chunk, in order, within the maximum;
//! no more than the chunk is consumed; offsets follow the chunk's.

#![no_main]

use libfuzzer_sys::fuzz_target;
use logging_sidecar::lines::split;

fuzz_target!(|data: &[u8]| {
    let [a, b, flags, chunk @ ..] = data else {
        return;
    };
    let max_line_bytes = 1 + usize::from(u16::from_le_bytes([*a, *b]) % 512);
    let (skipping, flush) = (flags & 1 != 0, flags & 2 != 0);
    let offset = 1_000_000;
    let out = split(chunk, offset, max_line_bytes, skipping, flush);
    assert!(out.consumed <= chunk.len());
    let mut end = 0usize;
    for line in &out.lines {
        let start = line.start as usize;
        let len = line.len as usize;
        assert!(start >= end, "lines overlap or go back");
        assert!(start + len <= chunk.len());
        assert!(start + len <= out.consumed);
        assert!(len <= max_line_bytes);
        assert_eq!(line.offset, offset + start as u64);
        assert!(!chunk[start..start + len].contains(&b'\n'));
        end = start + len;
    }
});
