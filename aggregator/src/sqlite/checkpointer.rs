//! The checkpointer actor: copies the WAL into the database file, off the writer's path.
//!
//! A checkpoint writes pages back and fsyncs; on the writer's connection that would stall
//! every batch behind it. Here it runs on its own thread and connection, `PASSIVE`, so it
//! never blocks the writer or a reader. It does not affect what an acknowledgement
//! means: a committed batch is in the WAL, and the WAL is replayed on open.

use std::time::Duration;

use actix::prelude::*;

use super::db::Db;

/// How often the WAL is checkpointed.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);
/// Messages are never sent to it; the capacity only bounds the mailbox on principle.
pub const CHECKPOINTER_MAILBOX: usize = 1;

pub struct Checkpointer {
    store: Db,
    /// The last failure was logged; the next success says it recovered.
    failing: bool,
}

impl Checkpointer {
    pub fn start(arbiter: &ArbiterHandle, store: Db) -> Addr<Checkpointer> {
        Checkpointer::start_in_arbiter(arbiter, move |ctx: &mut Context<Checkpointer>| {
            ctx.set_mailbox_capacity(CHECKPOINTER_MAILBOX);
            Checkpointer {
                store,
                failing: false,
            }
        })
    }

    fn checkpoint(&mut self) {
        match self.store.checkpoint() {
            Ok(_) if self.failing => {
                self.failing = false;
                log::info!("WAL checkpoints work again.");
            }
            Ok(_) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                log::warn!(
                    error = e.to_string().as_str();
                    "A WAL checkpoint failed; the writer checkpoints by itself if the WAL keeps growing."
                );
            }
            Err(_) => {}
        }
    }
}

impl Actor for Checkpointer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(CHECKPOINT_INTERVAL, |act, _| act.checkpoint());
    }
}
