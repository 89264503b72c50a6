//! What the three supervised actors share about their own restarts.
//!
//! Each actor runs under actix's `Supervisor`: when it stops, it is restarted with its
//! fields kept, and `restarting()` counts the restart here so that `/metrics` reports
//! it. [`Fault`] is the hook that makes an actor fail on purpose, so tests can show the
//! supervisor at work; nothing outside the process can send it.

use std::sync::atomic::{AtomicU64, Ordering};

use actix::Message;

/// Which actor of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Scraper,
    Enricher,
    Exposer,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Scraper, Stage::Enricher, Stage::Exposer];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Scraper => "scraper",
            Stage::Enricher => "enricher",
            Stage::Exposer => "exposer",
        }
    }
}

/// Restarts per actor since the process started.
#[derive(Debug, Default)]
pub struct Restarts([AtomicU64; 3]);

impl Restarts {
    pub fn record(&self, stage: Stage) {
        self.0[stage as usize].fetch_add(1, Ordering::Relaxed);
        log::warn!(actor = stage.as_str(); "Actor restarted by its supervisor.");
    }

    pub fn get(&self, stage: Stage) -> u64 {
        self.0[stage as usize].load(Ordering::Relaxed)
    }
}

/// Makes the receiving actor stop as if it had failed; its supervisor restarts it.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Fault;
