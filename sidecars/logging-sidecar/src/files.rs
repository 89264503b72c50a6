//! The files the tailer follows: discovery, rotation, truncation and reading.
//!
//! Plain logic under the tailer actor. Each poll, [`FileSet::discover`] matches the path
//! or glob against what is on disk, by device, inode and fingerprint:
//! - a file never seen is read from its start, a known one from its checkpoint;
//! - a file whose path now names another file (renamed away, or deleted) is *rotated*:
//!   it is still read through its open handle to its end, before newer files, and is
//!   closed once it has been quiet for the rotate wait and its lines are acknowledged
//!   (or after `release_unacked_after` at the latest, so a deleted file is never held
//!   for ever);
//! - a file that shrank below the read position, or whose first bytes changed, was
//!   truncated in place (copytruncate): it is a new file and is read from offset 0.
//!
//! [`FileSet::read`] reads one large chunk and splits it; the read position only moves
//! when the tailer reports the chunk handed over ([`FileSet::handed_over`]), and the
//! checkpoint only when the aggregator acknowledged it ([`FileSet::acknowledge`]).
//!
//! One job per module: `matching` names the files the path or glob stands for (with
//! `expand`, which walks a glob over names that need not be UTF-8),
//! `discovery` follows them (new, rotated, truncated), `recovery` finds files renamed
//! while the sidecar was down, `reading` reads chunks, `positions` records hand-overs
//! and acknowledgements, `copies` recognises copies (copytruncate), `finished`
//! remembers closed rotated files, `limit` keeps within `MAX_OPEN_FILES`.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::checkpoint::{CheckpointError, Checkpoints};
use crate::fingerprint::{self, FileKey};
use crate::lines::Line;

mod copies;
mod discovery;
mod expand;
mod finished;
mod limit;
mod matching;
mod positions;
mod reading;
mod recovery;
use copies::Origin;
use finished::Finished;

/// How files are read.
#[derive(Debug, Clone)]
pub struct ReadSettings {
    pub read_chunk_bytes: usize,
    pub max_line_bytes: usize,
    pub partial_line_timeout: Duration,
    pub rotate_wait: Duration,
    pub release_unacked_after: Duration,
    /// Files held open at most (`MAX_OPEN_FILES`); see `limit`.
    pub max_open_files: usize,
}

/// What discovery found, for the tailer's log and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Opened {
        path: PathBuf,
        offset: u64,
    },
    Rotated {
        path: PathBuf,
    },
    Truncated {
        path: PathBuf,
    },
    Released {
        path: PathBuf,
        unacknowledged: u64,
    },
    Recovered {
        path: PathBuf,
        offset: u64,
    },
    /// A new file is a copy of a known one (copytruncate): read on from `offset`.
    Copy {
        path: PathBuf,
        offset: u64,
    },
    Forgotten {
        path: PathBuf,
    },
    /// Over `MAX_OPEN_FILES`: a rotated file read to its end and acknowledged was closed
    /// before its rotate wait.
    ClosedForLimit {
        path: PathBuf,
    },
    /// Over `MAX_OPEN_FILES`: closed, its position kept; reopened when there is room.
    Parked {
        path: PathBuf,
        rotated: bool,
        unread: u64,
    },
    /// A parked file opened again.
    Reopened {
        path: PathBuf,
    },
    /// A parked file that could not be found again (deleted, or moved out of its
    /// directory): `unread` bytes of it, at least, were never read.
    Lost {
        path: PathBuf,
        unread: u64,
    },
}

/// A chunk of complete lines, ready for the enricher.
#[derive(Debug)]
pub struct Chunk {
    pub key: FileKey,
    /// The file instance's stream, for its lines' `event_id`s.
    pub stream: u64,
    /// The file's path when read.
    pub source: Arc<str>,
    pub data: Vec<u8>,
    pub lines: Vec<Line>,
    pub position: Position,
}

/// Where a file's reading stands once a chunk is handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub key: FileKey,
    /// The instance of the file (see [`crate::batch::Ack`]).
    pub stream: u64,
    pub end_offset: u64,
    pub skipping: bool,
}

/// The furthest a file was read (a chunk still being handed over included), and the
/// evidence of what it held before there ([`fingerprint::evidence`]): what a copy of it
/// must hold too. Lines up to there may be on their way under its stream, so only a
/// file holding the very same bytes may continue that stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    offset: u64,
    evidence: Option<u64>,
}

impl Seen {
    fn at(file: &File, offset: u64) -> Seen {
        Seen {
            offset,
            evidence: fingerprint::evidence(file, offset).ok().flatten(),
        }
    }
}

#[derive(Debug)]
struct Tracked {
    key: FileKey,
    stream: u64,
    /// Its stream is in the checkpoint file on disk: only then may its lines be sent.
    durable: bool,
    seen: Seen,
    /// When the sidecar opened it (wall clock): a copy of it is made after that.
    opened_at: SystemTime,
    path: PathBuf,
    file: Option<File>,
    read_offset: u64,
    committed: u64,
    skipping: bool,
    /// Chunk ends handed over inside an over-long line being skipped, not yet
    /// acknowledged: a checkpoint there says so, so that a restart skips on.
    skip_marks: Vec<u64>,
    /// Start offset and first sighting of an unterminated last line.
    partial: Option<(u64, Instant)>,
    size: u64,
    last_growth: Instant,
    rotated_at: Option<Instant>,
    /// Closed to stay within `MAX_OPEN_FILES`, its position kept: opened again (by
    /// path, else by identity in its directory) when there is room. `file` is `None`.
    parked: bool,
}

/// Every file being followed, with its checkpoints.
#[derive(Debug)]
pub struct FileSet {
    pattern: String,
    is_glob: bool,
    settings: ReadSettings,
    files: Vec<Tracked>,
    checkpoints: Checkpoints,
    /// Where the round-robin over current files starts next, so that with a glob one
    /// busy file cannot starve the others.
    turn: usize,
    /// Files truncated in place lately: a copy made of one before the truncation
    /// continues its stream ([`FileSet::copy_source`]).
    truncated: Vec<(Origin, Instant)>,
    /// New files that start like a known file but are shorter than its saved offset:
    /// perhaps a copy still being written. Held back until they are long enough or the
    /// rotate wait has passed.
    deferred: Vec<((u64, u64), Instant)>,
    /// Rotated files read to their end and closed: a sibling found again later is not
    /// opened again.
    finished: Finished,
    /// Events found by a read (a truncation), reported by the next discovery.
    pending_events: Vec<Event>,
}

/// How long a truncated file's checkpoint is kept for a copy of it to be found.
const COPY_MEMORY: Duration = Duration::from_secs(60);
/// Truncated files remembered at most.
const COPY_MEMORY_FILES: usize = 64;

impl FileSet {
    pub fn new(pattern: &str, settings: ReadSettings, checkpoints: Checkpoints) -> FileSet {
        FileSet {
            pattern: pattern.to_owned(),
            is_glob: pattern.contains(['*', '?', '[']),
            settings,
            files: Vec::new(),
            checkpoints,
            turn: 0,
            truncated: Vec::new(),
            deferred: Vec::new(),
            finished: Finished::default(),
            pending_events: Vec::new(),
        }
    }

    /// The path or glob followed.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Writes the checkpoint file if anything changed.
    pub fn save_checkpoints(&mut self) -> Result<bool, CheckpointError> {
        self.checkpoints.save()
    }

    /// Unacknowledged bytes of each file, by path.
    pub fn lag(&self) -> Vec<(String, u64)> {
        self.files
            .iter()
            .map(|t| {
                (
                    t.path.display().to_string(),
                    t.size.max(t.read_offset).saturating_sub(t.committed),
                )
            })
            .collect()
    }

    /// Files held open now (at most `max_open_files` after each discovery).
    pub fn open_files(&self) -> usize {
        self.files.iter().filter(|t| t.file.is_some()).count()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests;
