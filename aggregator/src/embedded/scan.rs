//! The read of Loki's API on the embedded store: a page of the records of a time range,
//! in time order, after a position, without counting them (so a page reads only the
//! memory chunks and segment groups that can still place a row, as `GET /logs` does
//! when its total is known).

use std::time::Instant;

use actix::prelude::*;

use super::bodies::SegmentBodies;
use super::filter::{After, Filter};
use super::memory::View;
use super::reader::Reader;
use super::search::{chunk_body, scan_segment, timeout, Best, Hit, Place};
use crate::query::Order;
use crate::store::{ScanPage, ScanQuery, ScanRow, StoreError, SCAN_PAGE_BYTES};

/// One page of a scan over `view`.
pub fn scan(
    view: &View,
    q: &ScanQuery,
    deadline: Instant,
    given: std::time::Duration,
) -> Result<ScanPage, StoreError> {
    let f = Filter {
        service: q.service.clone(),
        level: q.level.clone(),
        request_id: None,
        since_us: Some(q.since_us),
        until_us: Some(q.until_us),
        phrase: None,
    };
    let after = After {
        order: q.order,
        at: q.after,
    };
    let mut best = Best {
        order: q.order,
        keep: q.limit + 1,
        hits: Vec::new(),
    };
    let mut chunks: Vec<usize> = (0..view.memory.len()).collect();
    if q.order == Order::Desc {
        chunks.reverse();
    }
    for ci in chunks {
        let chunk = &view.memory[ci];
        if !f.time_overlaps(chunk.ts_min, chunk.ts_max) {
            continue;
        }
        for (ri, (id, r)) in chunk.rows.iter().enumerate() {
            let key = (r.ts_us, *id);
            if f.time_ok(r.ts_us)
                && f.labels_ok(r.service.as_deref(), r.level.as_deref())
                && after.admits(key)
            {
                best.push(Hit {
                    key,
                    place: Place::Memory { chunk: ci, row: ri },
                });
            }
        }
    }
    timeout(deadline, given)?;
    let mut order: Vec<usize> = (0..view.segments.len()).collect();
    if q.order == Order::Desc {
        order.reverse();
    }
    for si in order {
        scan_segment(
            &view.segments[si],
            si,
            &f,
            &after,
            true,
            &mut best,
            deadline,
            given,
        )?;
    }
    best.trim();
    let mut page = ScanPage::default();
    let mut bytes = 0;
    let mut bodies = SegmentBodies::default();
    let shown = best.hits.len().min(q.limit);
    for (i, hit) in best.hits.iter().enumerate() {
        if page.rows.len() == q.limit || bytes > SCAN_PAGE_BYTES {
            page.more = true;
            break;
        }
        let body = match hit.place {
            Place::Memory { chunk, row } => chunk_body(&view.memory[chunk], row).to_owned(),
            Place::Segment { .. } => bodies.get(view, &best.hits[i..shown])?,
        };
        bytes += body.len();
        page.rows.push(ScanRow {
            id: hit.key.1,
            ts_us: hit.key.0,
            body,
        });
    }
    Ok(page)
}

/// One page of a scan, stopped at `deadline`.
#[derive(Message)]
#[rtype(result = "Result<ScanPage, StoreError>")]
pub struct Scan {
    pub query: ScanQuery,
    pub deadline: Instant,
    pub asked: Instant,
}

impl Handler<Scan> for Reader {
    type Result = Result<ScanPage, StoreError>;

    fn handle(&mut self, msg: Scan, _: &mut Context<Self>) -> Self::Result {
        let given = msg.deadline.saturating_duration_since(msg.asked);
        if Instant::now() >= msg.deadline {
            return Err(StoreError::Timeout(given));
        }
        let start = Instant::now();
        let page = scan(&self.view.get(), &msg.query, msg.deadline, given);
        self.metrics
            .query_duration
            .with_label_values(&["loki_scan"])
            .observe(start.elapsed().as_secs_f64());
        page
    }
}
