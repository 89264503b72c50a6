//! Reading a segment's columns: whole row groups, or only the rows of some blocks
//! (the pages before and between them skipped by their headers, never decompressed).

use parquet::column::reader::get_typed_column_reader;
use parquet::data_type::{ByteArray, ByteArrayType, FixedLenByteArrayType, Int64Type};
use parquet::file::reader::FileReader;

use shared::event_id::StreamSpan;

use super::{Segment, SegmentError, COL_BODY, COL_EVENT_ID, COL_REQUEST_KEY};
use crate::embedded::filter::field_of;

impl Segment {
    /// A Parquet error reading this segment, naming its file.
    fn parquet_error(&self, source: parquet::errors::ParquetError) -> SegmentError {
        SegmentError::Parquet {
            path: self.path.clone(),
            source,
        }
    }

    /// Content this segment should not hold, naming its file.
    fn invalid(&self, reason: String) -> SegmentError {
        SegmentError::Invalid {
            path: self.path.clone(),
            reason,
        }
    }

    /// Column `col` (int64) of row group `rg`.
    pub fn read_i64(&self, rg: usize, col: usize) -> Result<Vec<i64>, SegmentError> {
        let perr = |source| self.parquet_error(source);
        let rows = self.index.groups[rg].rows as usize;
        let group = self.reader.get_row_group(rg).map_err(perr)?;
        let mut reader =
            get_typed_column_reader::<Int64Type>(group.get_column_reader(col).map_err(perr)?);
        let mut values = Vec::with_capacity(rows);
        while values.len() < rows {
            let (n, _, _) = reader
                .read_records(rows - values.len(), None, None, &mut values)
                .map_err(perr)?;
            if n == 0 {
                break;
            }
        }
        Ok(values)
    }

    /// The `request_key` of the rows `ranges` (ascending, disjoint `[start, end)`) of
    /// row group `rg`, one entry per row of the group: `None` for a record without a
    /// request id and for a row outside `ranges`. `None` for a file written before the
    /// column. The rows outside `ranges` are skipped, not decoded (each value decoded
    /// costs a reference count on the page).
    pub fn read_request_keys(
        &self,
        rg: usize,
        ranges: &[(usize, usize)],
    ) -> Result<Option<Vec<Option<[u8; 2]>>>, SegmentError> {
        if !self.request_keys {
            return Ok(None);
        }
        let perr = |source| self.parquet_error(source);
        let invalid = |reason: String| self.invalid(reason);
        let rows = self.index.groups[rg].rows as usize;
        let group = self.reader.get_row_group(rg).map_err(perr)?;
        let mut reader = get_typed_column_reader::<FixedLenByteArrayType>(
            group.get_column_reader(COL_REQUEST_KEY).map_err(perr)?,
        );
        let mut keys = vec![None; rows];
        let mut values = Vec::new();
        let mut defs: Vec<i16> = Vec::new();
        let mut pos = 0;
        for &(start, end) in ranges {
            let (start, end) = (start.max(pos), end.min(rows));
            if start >= end {
                continue;
            }
            if start > pos && reader.skip_records(start - pos).map_err(perr)? != start - pos {
                return Err(invalid(format!("row group {rg} ends before row {start}")));
            }
            values.clear();
            defs.clear();
            let mut read = 0;
            while read < end - start {
                let (n, _, _) = reader
                    .read_records(end - start - read, Some(&mut defs), None, &mut values)
                    .map_err(perr)?;
                if n == 0 {
                    break;
                }
                read += n;
            }
            if read != end - start || defs.len() != read {
                return Err(invalid(format!("row group {rg} ends before row {end}")));
            }
            let mut values = values.iter();
            for (slot, &d) in keys[start..end].iter_mut().zip(&defs) {
                if d == 0 {
                    continue;
                }
                let key = values
                    .next()
                    .and_then(|v| <[u8; 2]>::try_from(v.data()).ok())
                    .ok_or_else(|| {
                        invalid(format!("row group {rg}: a request key is not 2 bytes"))
                    })?;
                *slot = Some(key);
            }
            if values.next().is_some() {
                return Err(invalid(format!(
                    "row group {rg}: request keys do not match their rows"
                )));
            }
            pos = end;
        }
        Ok(Some(keys))
    }

    /// Rows `ranges` (ascending, disjoint `[start, end)`) of column `col` (string) of row
    /// group `rg`. Pages before and between the ranges are skipped by their headers,
    /// without being read or decompressed.
    pub fn read_strings_in(
        &self,
        rg: usize,
        col: usize,
        ranges: &[(usize, usize)],
    ) -> Result<Picked, SegmentError> {
        let perr = |source| self.parquet_error(source);
        let invalid = |reason: String| self.invalid(reason);
        let rows = self.index.groups[rg].rows as usize;
        let group = self.reader.get_row_group(rg).map_err(perr)?;
        let mut reader =
            get_typed_column_reader::<ByteArrayType>(group.get_column_reader(col).map_err(perr)?);
        let mut values: Vec<ByteArray> = Vec::new();
        let mut defs: Vec<i16> = Vec::new();
        let optional = col != COL_BODY;
        let mut picked = Vec::new();
        let mut pos = 0;
        for &(start, end) in ranges {
            let (start, end) = (start.max(pos), end.min(rows));
            if start >= end {
                continue;
            }
            if start > pos {
                let skipped = reader.skip_records(start - pos).map_err(perr)?;
                if skipped != start - pos {
                    return Err(invalid(format!(
                        "row group {rg} column {col} ends before row {start}"
                    )));
                }
            }
            let mut read = 0;
            while read < end - start {
                let (n, _, _) = reader
                    .read_records(
                        end - start - read,
                        optional.then_some(&mut defs),
                        None,
                        &mut values,
                    )
                    .map_err(perr)?;
                if n == 0 {
                    break;
                }
                read += n;
            }
            if read != end - start {
                return Err(invalid(format!(
                    "row group {rg} column {col} ends before row {end}"
                )));
            }
            picked.extend(start..end);
            pos = end;
        }
        let strings =
            Strings::new(values, optional.then_some(defs), picked.len()).map_err(invalid)?;
        Ok(Picked {
            rows: picked,
            strings,
        })
    }

    /// The `event_id` of each row of row group `rg`. The column holds only the ids that
    /// are not structured (in files that say so, [`crate::embedded::index::IdSummary::in_bodies`]); with
    /// `structured`, those are read back from the bodies too, exactly as the record
    /// parser read them when the record came in (which costs decompressing and parsing
    /// the group's bodies: only recovery from overlapping ranges and compaction need it).
    pub fn read_event_ids(
        &self,
        rg: usize,
        structured: bool,
    ) -> Result<Vec<Option<String>>, SegmentError> {
        let col = self.read_strings(rg, COL_EVENT_ID)?;
        let rows = self.index.groups[rg].rows as usize;
        let mut ids: Vec<Option<String>> =
            (0..rows).map(|r| col.get(r).map(str::to_owned)).collect();
        if structured && self.index.ids.in_bodies && ids.iter().any(Option::is_none) {
            let bodies = self.read_strings(rg, COL_BODY)?;
            for (row, id) in ids.iter_mut().enumerate() {
                if id.is_none() {
                    *id = bodies.get(row).and_then(structured_id_in);
                }
            }
        }
        Ok(ids)
    }

    /// Column `col` (string) of row group `rg`, one entry per row.
    pub fn read_strings(&self, rg: usize, col: usize) -> Result<Strings, SegmentError> {
        let perr = |source| self.parquet_error(source);
        let rows = self.index.groups[rg].rows as usize;
        let group = self.reader.get_row_group(rg).map_err(perr)?;
        let mut reader =
            get_typed_column_reader::<ByteArrayType>(group.get_column_reader(col).map_err(perr)?);
        let mut values: Vec<ByteArray> = Vec::with_capacity(rows);
        let mut defs: Vec<i16> = Vec::with_capacity(rows);
        let optional = col != COL_BODY;
        let mut read = 0;
        while read < rows {
            let (n, _, _) = reader
                .read_records(
                    rows - read,
                    optional.then_some(&mut defs),
                    None,
                    &mut values,
                )
                .map_err(perr)?;
            if n == 0 {
                break;
            }
            read += n;
        }
        if read != rows {
            return Err(SegmentError::Invalid {
                path: self.path.clone(),
                reason: format!("row group {rg} column {col} has {read} of {rows} rows"),
            });
        }
        Strings::new(values, optional.then_some(defs), rows).map_err(|reason| {
            SegmentError::Invalid {
                path: self.path.clone(),
                reason,
            }
        })
    }
}

/// The structured `event_id` of a stored body, as the record parser read it; `None`
/// for a body without one (an id that is not structured is in the column).
pub fn structured_id_in(body: &str) -> Option<String> {
    field_of(body, "event_id").filter(|id| StreamSpan::parse(id).is_some())
}

/// Some rows of a string column of one row group.
pub struct Picked {
    /// The rows read, ascending.
    rows: Vec<usize>,
    strings: Strings,
}

impl Picked {
    /// The value of row `row`; `None` when it is missing or was not read.
    pub fn get(&self, row: usize) -> Option<&str> {
        let i = self.rows.binary_search(&row).ok()?;
        self.strings.get(i)
    }
}

/// A string column of one row group: its values one after the other in one string,
/// checked as UTF-8 once (a check per value, and again per read, cost more than the
/// decompression).
pub struct Strings {
    text: String,
    /// Value `i` ends at `ends[i]` in `text` and starts where value `i - 1` ends.
    ends: Vec<usize>,
    /// Row → index of its value, or `u32::MAX` for a missing value.
    slots: Option<Vec<u32>>,
}

impl Strings {
    fn new(values: Vec<ByteArray>, defs: Option<Vec<i16>>, rows: usize) -> Result<Strings, String> {
        let mut buf = Vec::with_capacity(values.iter().map(|v| v.len()).sum());
        let mut ends = Vec::with_capacity(values.len());
        for v in &values {
            buf.extend_from_slice(v.data());
            ends.push(buf.len());
        }
        drop(values);
        let not_utf8 = |e: &dyn std::fmt::Display| format!("a value is not UTF-8: {e}");
        let text = String::from_utf8(buf).map_err(|e| not_utf8(&e))?;
        // Valid as a whole and cut at character boundaries: so is every value.
        if let Some(&e) = ends.iter().find(|&&e| !text.is_char_boundary(e)) {
            return Err(not_utf8(&format!("a value ends inside a character at {e}")));
        }
        let slots = match defs {
            None => {
                if ends.len() != rows {
                    return Err(format!("{} values for {rows} rows", ends.len()));
                }
                None
            }
            Some(defs) => {
                let mut next = 0u32;
                let slots: Vec<u32> = defs
                    .iter()
                    .map(|&d| {
                        if d > 0 {
                            next += 1;
                            next - 1
                        } else {
                            u32::MAX
                        }
                    })
                    .collect();
                if next as usize != ends.len() || slots.len() != rows {
                    return Err("definition levels do not match the values".to_owned());
                }
                Some(slots)
            }
        };
        Ok(Strings { text, ends, slots })
    }

    /// A column of `values` (`None` for a missing one), as a reader would build it.
    #[cfg(test)]
    pub fn of(values: &[Option<&str>]) -> Strings {
        let present = values
            .iter()
            .flatten()
            .map(|v| ByteArray::from(v.as_bytes().to_vec()))
            .collect();
        let defs = values.iter().map(|v| i16::from(v.is_some())).collect();
        Strings::new(present, Some(defs), values.len()).expect("whole UTF-8 values")
    }

    /// The value of row `i`.
    pub fn get(&self, i: usize) -> Option<&str> {
        self.value(self.slot(i)?)
    }

    /// The index of row `i`'s value; `None` when it is missing.
    pub fn slot(&self, i: usize) -> Option<usize> {
        match &self.slots {
            None => (i < self.ends.len()).then_some(i),
            Some(s) => match s.get(i) {
                Some(&u32::MAX) | None => None,
                Some(&s) => Some(s as usize),
            },
        }
    }

    /// How many values there are (missing ones not counted).
    pub fn values(&self) -> usize {
        self.ends.len()
    }

    /// Value `slot`, by its index.
    pub fn value(&self, slot: usize) -> Option<&str> {
        self.text.get(self.range(slot)?)
    }

    /// Where value `slot` lies in [`Self::text`].
    pub fn range(&self, slot: usize) -> Option<std::ops::Range<usize>> {
        let end = *self.ends.get(slot)?;
        let start = match slot {
            0 => 0,
            _ => *self.ends.get(slot - 1)?,
        };
        Some(start..end)
    }

    /// Every value one after the other, without separators: a search over the whole
    /// group costs one pass instead of a call per value.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where each value ends in [`Self::text`], in value order.
    pub fn ends(&self) -> &[usize] {
        &self.ends
    }

    pub fn bytes(&self) -> usize {
        self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{file_name, write, Row, Segment, COL_BODY, COL_MESSAGE};
    use super::{ByteArray, Strings};
    use crate::record::{parse, Received};

    #[test]
    fn every_value_must_be_utf8_on_its_own() {
        let v = |b: &[u8]| ByteArray::from(b.to_vec());
        let s = Strings::new(
            vec![v("é".as_bytes()), v(b""), v(b"x")],
            Some(vec![1, 0, 1, 1]),
            4,
        )
        .unwrap();
        assert_eq!(
            (0..5).map(|i| s.get(i)).collect::<Vec<_>>(),
            [Some("é"), None, Some(""), Some("x"), None]
        );
        // "aéb" as a whole, but cut inside the "é".
        assert!(Strings::new(vec![v(b"a\xc3"), v(b"\xa9b")], None, 2).is_err());
        assert!(Strings::new(vec![v(b"\xff")], None, 1).is_err());
        assert!(Strings::new(vec![v(b"a")], None, 2).is_err());
        assert!(Strings::new(vec![v(b"a")], Some(vec![1, 1]), 2).is_err());
    }

    #[test]
    fn rows_of_some_blocks_read_as_in_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let received = Received::now();
        let records: Vec<_> = (0..3000)
            .map(|i| {
                let line = if i % 7 == 0 {
                    format!(r#"{{"request_id":"r{i}"}}"#)
                } else {
                    format!(r#"{{"message":"m {i}","request_id":"r{i}"}}"#)
                };
                parse(&line, &received).unwrap()
            })
            .collect();
        let rows: Vec<Row> = records
            .iter()
            .enumerate()
            .map(|(i, record)| Row {
                id: i as i64 + 1,
                record,
            })
            .collect();
        let path = dir.path().join(file_name(1, 3000));
        write(&path, &rows, 3000).unwrap();
        let seg = Segment::open(&path).unwrap();
        let ranges = [(0, 1), (5, 7), (1023, 1025), (2047, 2049), (2990, 4000)];
        for col in [COL_BODY, COL_MESSAGE] {
            let whole = seg.read_strings(0, col).unwrap();
            let picked = seg.read_strings_in(0, col, &ranges).unwrap();
            for r in 0..3000 {
                let inside = ranges.iter().any(|&(a, b)| a <= r && r < b);
                let want = if inside { whole.get(r) } else { None };
                assert_eq!(picked.get(r), want, "column {col} row {r}");
            }
            assert!(picked.get(15).is_none() && whole.get(15).is_some());
        }
        assert_eq!(seg.read_strings_in(0, COL_BODY, &[]).unwrap().get(0), None);
    }
}
