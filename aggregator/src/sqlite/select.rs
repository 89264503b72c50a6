//! The reads of `GET /logs` on the SQLite store: filters, text search, totals, pages.

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::db::{where_clause, Db, DbError, MAX_PAGE_BYTES};
use crate::query::{text_phrase, LogQuery, Order};
use crate::store::Page;

impl Db {
    /// One page of records matching `q`, and how many match in all.
    pub fn query(&self, q: &LogQuery) -> Result<Page, DbError> {
        let mut conds: Vec<&str> = Vec::new();
        let mut args: Vec<Value> = Vec::new();
        if let Some(s) = &q.service {
            conds.push("service = ?");
            args.push(Value::Text(s.clone()));
        }
        if let Some(l) = &q.level {
            conds.push("level = ?");
            args.push(Value::Text(l.clone()));
        }
        if let Some(t) = q.since_us {
            conds.push("ts >= ?");
            args.push(Value::Integer(t));
        }
        if let Some(t) = q.until_us {
            conds.push("ts < ?");
            args.push(Value::Integer(t));
        }
        let mut search = Vec::new();
        if let Some(t) = &q.text {
            search.push(format!("message : {t}"));
        }
        if let Some(r) = &q.request_id {
            // An id without a letter or digit cannot be looked up in FTS5: the exact
            // comparison alone then finds it, by a scan.
            if let Some(phrase) = text_phrase(r) {
                search.push(format!("request_id : {phrase}"));
            }
            conds.push("request_id = ?");
            args.push(Value::Text(r.clone()));
        }
        if !search.is_empty() {
            conds.push("id IN (SELECT rowid FROM logs_text WHERE logs_text MATCH ?)");
            args.push(Value::Text(search.join(" AND ")));
        }
        let total = self.total(q, &conds, &args)?;
        if total == 0 {
            return Ok(Page {
                total,
                logs: Vec::new(),
                last: None,
            });
        }
        // Many matches: walk the time index (of the service or level when filtered).
        let walk = if !search.is_empty() && total > self.sparse_limit(q.limit)? {
            if q.service.is_some() {
                " INDEXED BY logs_service_ts"
            } else if q.level.is_some() {
                " INDEXED BY logs_level_ts"
            } else {
                " INDEXED BY logs_ts"
            }
        } else {
            ""
        };

        let (cmp, dir) = match q.order {
            Order::Asc => (">", "ASC"),
            Order::Desc => ("<", "DESC"),
        };
        let mut page_conds = conds.clone();
        let cursor_cond = format!("(ts, id) {cmp} (?, ?)");
        let mut page_args = args;
        if let Some(c) = q.cursor {
            page_conds.push(&cursor_cond);
            page_args.push(Value::Integer(c.ts_us));
            page_args.push(Value::Integer(c.id));
        }
        let sql = format!(
            "SELECT id, ts, body FROM logs{walk}{} ORDER BY ts {dir}, id {dir} LIMIT {}",
            where_clause(&page_conds),
            q.limit + 1
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut rows = stmt.query(params_from_iter(page_args.iter()))?;
        let mut logs = Vec::with_capacity(q.limit.min(1024));
        let mut last = None;
        let mut more = false;
        let mut bytes = 0;
        while let Some(row) = rows.next()? {
            if logs.len() == q.limit || bytes > MAX_PAGE_BYTES {
                more = true;
                break;
            }
            let id: i64 = row.get(0)?;
            let ts: i64 = row.get(1)?;
            let body = row.get::<_, String>(2)?;
            bytes += body.len();
            logs.push(body);
            last = Some((ts, id));
        }
        Ok(Page {
            total,
            logs,
            last: if more { last } else { None },
        })
    }

    /// Matches above which a search walks the time index (see [`SPARSE_MATCHES_MIN`]).
    fn sparse_limit(&self, limit: usize) -> Result<u64, DbError> {
        let balance = ((limit as f64 + 1.0) * self.stored()? as f64).sqrt() as u64;
        Ok(balance.max(self.sparse_matches_min))
    }

    /// The number of records matching the filters, from `counts` when only service and
    /// level filter, from an index otherwise.
    fn total(&self, q: &LogQuery, conds: &[&str], args: &[Value]) -> Result<u64, DbError> {
        let only_counted = q.request_id.is_none()
            && q.since_us.is_none()
            && q.until_us.is_none()
            && q.text.is_none();
        let n: i64 = if only_counted {
            let mut sql = "SELECT coalesce(sum(n), 0) FROM counts".to_owned();
            sql.push_str(&where_clause(conds));
            self.conn
                .prepare_cached(&sql)?
                .query_row(params_from_iter(args.iter()), |r| r.get(0))?
        } else if conds.len() == 1 && q.text.is_some() {
            // The search alone: counted on the FTS5 index, without visiting `logs`.
            self.conn
                .prepare_cached("SELECT count(*) FROM logs_text WHERE logs_text MATCH ?")?
                .query_row(params_from_iter(args.iter()), |r| r.get(0))?
        } else {
            let sql = format!("SELECT count(*) FROM logs{}", where_clause(conds));
            self.conn
                .prepare_cached(&sql)?
                .query_row(params_from_iter(args.iter()), |r| r.get(0))?
        };
        Ok(n.max(0) as u64)
    }
}
