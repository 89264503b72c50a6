//! The read of Loki's API on the SQLite store, with the reader message that runs it:
//! pages of a time range in time order (no totals, so a page is one index seek and the
//! rows read).

use std::time::Instant;

use actix::prelude::*;
use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::db::{Db, DbError};
use super::reader::Reader;
use crate::query::Order;
use crate::store::{ScanPage, ScanQuery, ScanRow, StoreError};

/// A page stops early once its bodies exceed this many bytes.
pub const SCAN_PAGE_BYTES: usize = 4 << 20;

impl Db {
    /// One page of a scan.
    pub fn scan(&self, q: &ScanQuery) -> Result<ScanPage, DbError> {
        let mut conds = vec!["ts >= ?", "ts < ?"];
        let mut args = vec![Value::Integer(q.since_us), Value::Integer(q.until_us)];
        if let Some(s) = &q.service {
            conds.push("service = ?");
            args.push(Value::Text(s.clone()));
        }
        if let Some(l) = &q.level {
            conds.push("level = ?");
            args.push(Value::Text(l.clone()));
        }
        let (cmp, dir) = match q.order {
            Order::Asc => (">", "ASC"),
            Order::Desc => ("<", "DESC"),
        };
        let cursor = format!("(ts, id) {cmp} (?, ?)");
        if let Some((ts, id)) = q.after {
            conds.push(&cursor);
            args.push(Value::Integer(ts));
            args.push(Value::Integer(id));
        }
        let sql = format!(
            "SELECT id, ts, body FROM logs WHERE {} ORDER BY ts {dir}, id {dir} LIMIT {}",
            conds.join(" AND "),
            q.limit + 1
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(args.iter()))?;
        let mut page = ScanPage::default();
        let mut bytes = 0;
        while let Some(row) = rows.next()? {
            if page.rows.len() == q.limit || bytes > SCAN_PAGE_BYTES {
                page.more = true;
                break;
            }
            let body: String = row.get(2)?;
            bytes += body.len();
            page.rows.push(ScanRow {
                id: row.get(0)?,
                ts_us: row.get(1)?,
                body,
            });
        }
        Ok(page)
    }
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
        self.within("loki_scan", msg.asked, msg.deadline, |db| {
            db.scan(&msg.query)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SyncMode;
    use crate::record::{self, Received};

    #[test]
    fn scans_page_by_position() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Db::open_writer(dir.path(), SyncMode::Normal).unwrap();
        let batch: Vec<_> = (0..25)
            .map(|i| {
                let text = serde_json::json!({
                    "timestamp": format!("2024-05-01T10:00:{:02}Z", i),
                    "service": if i % 2 == 0 { "even" } else { "odd" },
                    "level": "info", "event_id": format!("e{i}"), "i": i,
                })
                .to_string();
                record::parse(&text, &Received::now()).unwrap()
            })
            .collect();
        w.insert(&batch).unwrap();
        let r = Db::open_reader(dir.path()).unwrap();
        let t0 = batch[0].ts_us;
        for order in [Order::Asc, Order::Desc] {
            let mut q = ScanQuery {
                service: Some("even".into()),
                level: Some("INFO".into()),
                since_us: t0 + 2_000_000,
                until_us: t0 + 20_000_000,
                order,
                after: None,
                limit: 3,
            };
            let mut seen = Vec::new();
            loop {
                let page = r.scan(&q).unwrap();
                seen.extend(page.rows.iter().map(|row| (row.ts_us - t0) / 1_000_000));
                match (page.more, page.rows.last()) {
                    (true, Some(last)) => q.after = Some((last.ts_us, last.id)),
                    _ => break,
                }
            }
            let mut want: Vec<i64> = (2..20).filter(|i| i % 2 == 0).collect();
            if order == Order::Desc {
                want.reverse();
            }
            assert_eq!(seen, want);
        }
    }
}
