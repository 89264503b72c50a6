//! Immutable segments: Apache Parquet files, zstd-compressed, one row per record.
//!
//! `DATA_DIR/segments/<first id>-<last id>.parquet` (ids 20 digits), columns:
//!
//! | column | type | |
//! |---|---|---|
//! | `id` | int64 | the record's id (arrival order) |
//! | `ts` | int64, timestamp µs UTC | the record's time |
//! | `service`, `level` | string, optional, dictionary | as filtered (level upper-cased) |
//! | `event_id` | string, optional | the sender's idempotency key, unless it is a structured (sidecar) id: those are in the body and, as ranges, in the footer |
//! | `message` | string, optional | the text `q=` searches |
//! | `body` | string | the record as stored: its JSON with `aggregator_received_at` |
//! | `request_key` | 2 bytes, optional | two bytes of the hash of the record's `request_id` ([`request_fingerprint`]); files written before it have no such column |
//!
//! Rows are sorted by `(ts, id)` and cut into row groups of [`ROW_GROUP_ROWS`], so a
//! time range or a page touches few of them; data pages are cut at block boundaries
//! ([`BLOCK_ROWS`] rows) once they hold [`PAGE_BYTES`], so that a reader decompresses
//! only the body pages of the blocks it needs. The
//! footer's key-value metadata `log_aggregator.index` holds, per row group, what
//! queries prune with: the time and id range, the record count per (service, level), a
//! Bloom filter over the words of the messages and one over the request ids of each
//! block, and the words and pairs of words many of its rows hold, with their row
//! counts ([`crate::embedded::index`], [`crate::embedded::terms`]).
//!
//! A segment is written to a `.tmp` name, synced, then renamed: a file with the final
//! name is always whole.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::data_type::{
    ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType, Int64Type,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{ChunkReader, FileReader, Length};

mod columns;
mod matched;
pub use columns::{structured_id_in, Picked, Strings};
pub use matched::MatchCounts;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::SerializedFileWriter;
use parquet::format::KeyValue;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use shared::event_id::StreamSpan;

use super::index::{
    key_hash, request_fingerprint, GroupIndex, IdSummary, SegmentIndex, BLOCK_ROWS, INDEX_KEY,
};
use crate::record::Record;

/// The directory of segments inside `DATA_DIR`.
pub const SEGMENT_DIR: &str = "segments";
/// Rows per row group: a page of a query decompresses about this many bodies (about
/// 2 MiB), and the per-group filters stay selective.
pub const ROW_GROUP_ROWS: usize = 8192;
/// The size at which a data page is cut (at the next block boundary).
pub const PAGE_BYTES: usize = 256 << 10;
/// zstd level of every column but `body`.
pub const ZSTD_LEVEL: i32 = 3;
/// zstd level of the `body` column: most of a segment's bytes (see
/// docs/log-aggregator.md for what each level costs and saves).
pub const BODY_ZSTD_LEVEL: i32 = 6;

pub const COL_ID: usize = 0;
pub const COL_TS: usize = 1;
pub const COL_SERVICE: usize = 2;
pub const COL_LEVEL: usize = 3;
pub const COL_EVENT_ID: usize = 4;
pub const COL_MESSAGE: usize = 5;
pub const COL_BODY: usize = 6;
/// Last, so that the other columns keep their places in files written before it.
pub const COL_REQUEST_KEY: usize = 7;
/// The name of [`COL_REQUEST_KEY`], by which a reader knows a file has it.
pub const REQUEST_KEY_NAME: &str = "request_key";

const SCHEMA: &str = "
message log_record {
    required int64 id;
    required int64 ts (TIMESTAMP(MICROS,true));
    optional binary service (STRING);
    optional binary level (STRING);
    optional binary event_id (STRING);
    optional binary message (STRING);
    required binary body (STRING);
    optional fixed_len_byte_array(2) request_key;
}";
/// The line of [`SCHEMA`] that files written before the `request_key` column lack.
#[cfg(test)]
const REQUEST_KEY_LINE: &str = "    optional fixed_len_byte_array(2) request_key;\n";

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// The file name of the segment holding ids `first..=last`.
pub fn file_name(first: i64, last: i64) -> String {
    format!("{first:020}-{last:020}.parquet")
}

/// The id range a segment's file name says, if it is one.
pub fn parse_name(name: &str) -> Option<(i64, i64)> {
    let (a, b) = name.strip_suffix(".parquet")?.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// One record of a segment being written.
pub struct Row<'a> {
    pub id: i64,
    pub record: &'a Record,
}

/// Writes a segment row group by row group (rows sorted by `(ts, id)` across calls),
/// then its index into the footer.
pub struct SegmentWriter {
    path: PathBuf,
    /// Every `event_id` written, summarised into the footer at the end.
    event_ids: Vec<String>,
    group_rows: usize,
    writer: SerializedFileWriter<File>,
    index: SegmentIndex,
}

impl SegmentWriter {
    /// A writer of row groups of up to `group_rows` rows ([`ROW_GROUP_ROWS`] but in
    /// tests).
    pub fn create(path: &Path, group_rows: usize) -> Result<SegmentWriter, SegmentError> {
        SegmentWriter::create_with(path, group_rows, SCHEMA)
    }

    /// A writer of files as they were before the `request_key` column, so that tests
    /// show those are still read right.
    #[cfg(test)]
    pub fn create_before_request_keys(
        path: &Path,
        group_rows: usize,
    ) -> Result<SegmentWriter, SegmentError> {
        SegmentWriter::create_with(path, group_rows, &SCHEMA.replace(REQUEST_KEY_LINE, ""))
    }

    fn create_with(
        path: &Path,
        group_rows: usize,
        schema: &str,
    ) -> Result<SegmentWriter, SegmentError> {
        let perr = |source| SegmentError::Parquet {
            path: path.to_owned(),
            source,
        };
        let schema = Arc::new(parse_message_type(schema).map_err(perr)?);
        let plain = |name: &str| ColumnPath::from(name);
        let props = WriterProperties::builder()
            .set_created_by(format!("log-aggregator {}", env!("CARGO_PKG_VERSION")))
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(ZSTD_LEVEL).map_err(perr)?,
            ))
            .set_column_compression(
                plain("body"),
                Compression::ZSTD(ZstdLevel::try_new(BODY_ZSTD_LEVEL).map_err(perr)?),
            )
            .set_max_row_group_size(group_rows.max(1))
            // Pages are cut only at block boundaries, once they hold PAGE_BYTES: a body
            // page is one block (or a few of small records), so a reader skips to a
            // block and decompresses only its page, while the small columns, which
            // scans read whole, keep one page per row group (a page costs a zstd
            // context and a header read).
            .set_write_batch_size(BLOCK_ROWS)
            .set_data_page_size_limit(PAGE_BYTES)
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(plain("service"), true)
            .set_column_dictionary_enabled(plain("level"), true)
            .set_column_encoding(plain("id"), Encoding::DELTA_BINARY_PACKED)
            .set_column_encoding(plain("ts"), Encoding::DELTA_BINARY_PACKED)
            // Hash bytes do not compress; stored as they are, read without a context.
            .set_column_compression(plain(REQUEST_KEY_NAME), Compression::UNCOMPRESSED)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_column_statistics_enabled(plain("ts"), EnabledStatistics::Chunk)
            .set_column_statistics_enabled(plain("id"), EnabledStatistics::Chunk)
            .build();
        let file = File::create(path).map_err(|source| SegmentError::Io {
            path: path.to_owned(),
            source,
        })?;
        let writer = SerializedFileWriter::new(file, schema, Arc::new(props)).map_err(perr)?;
        Ok(SegmentWriter {
            path: path.to_owned(),
            event_ids: Vec::new(),
            group_rows: group_rows.max(1),
            writer,
            index: SegmentIndex::default(),
        })
    }

    /// The rows of a row group.
    pub fn group_rows(&self) -> usize {
        self.group_rows
    }

    /// Writes one row group (at most [`Self::group_rows`] rows, following the last).
    pub fn write_group(&mut self, group: &[Row<'_>]) -> Result<(), SegmentError> {
        if group.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let perr = |source| SegmentError::Parquet {
            path: path.clone(),
            source,
        };
        self.index.groups.push(GroupIndex::build(group));
        self.event_ids
            .extend(group.iter().filter_map(|r| r.record.event_id.clone()));
        let mut rg = self.writer.next_row_group().map_err(perr)?;
        let mut col = 0;
        while let Some(mut column) = rg.next_column().map_err(perr)? {
            match col {
                COL_REQUEST_KEY => {
                    let mut values = Vec::with_capacity(group.len());
                    let mut defs = Vec::with_capacity(group.len());
                    for r in group {
                        match r.record.request_id.as_deref() {
                            Some(id) => {
                                let fp = request_fingerprint(key_hash(id.as_bytes()));
                                values.push(FixedLenByteArray::from(fp.to_vec()));
                                defs.push(1);
                            }
                            None => defs.push(0),
                        }
                    }
                    column
                        .typed::<FixedLenByteArrayType>()
                        .write_batch(&values, Some(&defs), None)
                        .map_err(perr)?;
                }
                COL_ID | COL_TS => {
                    let values: Vec<i64> = group
                        .iter()
                        .map(|r| if col == COL_ID { r.id } else { r.record.ts_us })
                        .collect();
                    column
                        .typed::<Int64Type>()
                        .write_batch(&values, None, None)
                        .map_err(perr)?;
                }
                _ => {
                    let mut values = Vec::with_capacity(group.len());
                    let mut defs = Vec::with_capacity(group.len());
                    for r in group {
                        let s = match col {
                            COL_SERVICE => r.record.service.as_deref(),
                            COL_LEVEL => r.record.level.as_deref(),
                            // A structured id is in the body and the footer's ranges;
                            // reading it back is `Segment::read_event_ids`.
                            COL_EVENT_ID => r
                                .record
                                .event_id
                                .as_deref()
                                .filter(|id| StreamSpan::parse(id).is_none()),
                            COL_MESSAGE => r.record.message.as_deref(),
                            _ => Some(r.record.body.as_str()),
                        };
                        match s {
                            Some(v) => {
                                values.push(ByteArray::from(Bytes::copy_from_slice(v.as_bytes())));
                                defs.push(1);
                            }
                            None => defs.push(0),
                        }
                    }
                    let defs = (col != COL_BODY).then_some(defs.as_slice());
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(&values, defs, None)
                        .map_err(perr)?;
                }
            }
            column.close().map_err(perr)?;
            col += 1;
        }
        rg.close().map_err(perr)?;
        Ok(())
    }

    /// Writes the footer with the index and syncs the file; returns the index.
    pub fn finish(mut self) -> Result<SegmentIndex, SegmentError> {
        let path = self.path.clone();
        let perr = |source| SegmentError::Parquet {
            path: path.clone(),
            source,
        };
        self.index.ids = IdSummary::of(self.event_ids.iter().map(String::as_str));
        self.index.ids.in_bodies = true;
        self.writer
            .append_key_value_metadata(KeyValue::new(INDEX_KEY.to_owned(), self.index.encode()));
        let file = self.writer.into_inner().map_err(perr)?;
        file.sync_all().map_err(|source| SegmentError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(self.index)
    }
}

/// Writes `rows` (sorted by `(ts, id)`) to `path` and syncs it; returns its index.
pub fn write(
    path: &Path,
    rows: &[Row<'_>],
    group_rows: usize,
) -> Result<SegmentIndex, SegmentError> {
    let mut w = SegmentWriter::create(path, group_rows)?;
    for group in rows.chunks(w.group_rows()) {
        w.write_group(group)?;
    }
    w.finish()
}

/// A file read by position, so that readers on several threads never share a cursor
/// (`File`'s own reader seeks a descriptor that clones share).
pub struct PositionalFile {
    file: Arc<File>,
    len: u64,
}

impl Length for PositionalFile {
    fn len(&self) -> u64 {
        self.len
    }
}

/// A reader at an offset of a [`PositionalFile`].
pub struct At {
    file: Arc<File>,
    pos: u64,
}

impl Read for At {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl ChunkReader for PositionalFile {
    type T = io::BufReader<At>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        // Only page headers are read through this (a page's data with `get_bytes`),
        // and a reader skipping pages reads one header per page: a small buffer.
        Ok(io::BufReader::with_capacity(
            4 << 10,
            At {
                file: self.file.clone(),
                pos: start,
            },
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let mut buf = vec![0; length];
        self.file.read_exact_at(&mut buf, start)?;
        Ok(buf.into())
    }
}

/// An open segment: its file, footer and index, shared by every query.
pub struct Segment {
    pub path: PathBuf,
    pub first_id: i64,
    pub last_id: i64,
    pub index: SegmentIndex,
    reader: SerializedFileReader<PositionalFile>,
    pub bytes: u64,
    /// Records per (service, level) in the whole segment, summed once at open, so that
    /// counts cost one entry per label pair and segment.
    pub labels: Vec<(Option<String>, Option<String>, u64)>,
    rows: u64,
    /// Whether the file has the `request_key` column (files written before it do not).
    pub request_keys: bool,
    /// How many records recent filters matched here (the file never changes).
    pub matched: MatchCounts,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Segment({})", self.path.display())
    }
}

impl Segment {
    /// Opens a segment file and checks that it is whole and consistent with its name.
    pub fn open(path: &Path) -> Result<Segment, SegmentError> {
        let invalid = |reason: String| SegmentError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let (first_id, last_id) =
            parse_name(name).ok_or_else(|| invalid("not a segment file name".to_owned()))?;
        let file = File::open(path).map_err(|source| SegmentError::Io {
            path: path.to_owned(),
            source,
        })?;
        let len = file
            .metadata()
            .map_err(|source| SegmentError::Io {
                path: path.to_owned(),
                source,
            })?
            .len();
        let reader = SerializedFileReader::new(PositionalFile {
            file: Arc::new(file),
            len,
        })
        .map_err(|source| SegmentError::Parquet {
            path: path.to_owned(),
            source,
        })?;
        let meta = reader.metadata();
        let text = meta
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == INDEX_KEY))
            .and_then(|k| k.value.as_deref())
            .ok_or_else(|| invalid(format!("no {INDEX_KEY} in the footer")))?;
        let index = SegmentIndex::decode(text).map_err(invalid)?;
        let schema = meta.file_metadata().schema_descr();
        // A column of another name or shape is not ours: lookups then read bodies.
        let request_keys = schema.num_columns() > COL_REQUEST_KEY && {
            let c = schema.column(COL_REQUEST_KEY);
            c.name() == REQUEST_KEY_NAME
                && c.physical_type() == parquet::basic::Type::FIXED_LEN_BYTE_ARRAY
                && c.type_length() == 2
        };
        if index.groups.len() != meta.num_row_groups() {
            return Err(invalid(
                "the index does not match the row groups".to_owned(),
            ));
        }
        for (i, g) in index.groups.iter().enumerate() {
            let rows = meta.row_group(i).num_rows();
            if rows != g.rows as i64 || g.first_id < first_id || g.last_id > last_id {
                return Err(invalid(format!("row group {i} does not match its index")));
            }
        }
        let mut labels: std::collections::BTreeMap<(Option<String>, Option<String>), u64> =
            std::collections::BTreeMap::new();
        for g in &index.groups {
            for (s, l, n) in &g.labels {
                *labels.entry((s.clone(), l.clone())).or_default() += u64::from(*n);
            }
        }
        let rows = index.groups.iter().map(|g| u64::from(g.rows)).sum();
        Ok(Segment {
            path: path.to_owned(),
            first_id,
            last_id,
            index,
            reader,
            bytes: len,
            labels: labels.into_iter().map(|((s, l), n)| (s, l, n)).collect(),
            rows,
            request_keys,
            matched: MatchCounts::default(),
        })
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }
}
