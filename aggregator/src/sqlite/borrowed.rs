//! A prepared statement that binds text in place, for the writer's inserts.
//!
//! rusqlite binds every string as `SQLITE_TRANSIENT`, so SQLite copies it first (an
//! allocation, a copy and a free per value). The writer binds seven values per record,
//! five of them text (the body among them); those copies were about a tenth of its
//! instructions. Here text is bound as `SQLITE_STATIC`: SQLite reads it where it is.
//! That is sound because [`BorrowedStatement::execute`] borrows the values, binds, steps,
//! resets and clears every binding before it returns, so SQLite never holds a pointer
//! past the borrow.

use std::ffi::{c_char, c_int, CStr};
use std::ptr;

use rusqlite::{ffi, Connection};

/// One value to bind.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    Int(i64),
    /// `None` binds `NULL`.
    Text(Option<&'a str>),
}

/// A statement of one connection. The owner must drop it before that connection (in a
/// struct, declare it before the connection field).
pub struct BorrowedStatement {
    stmt: *mut ffi::sqlite3_stmt,
    db: *mut ffi::sqlite3,
}

// SAFETY: the statement is only used through `&mut self`, and it belongs to one
// connection that is itself `Send`; SQLite is built thread-safe, and the connection is
// never used from two threads at once.
unsafe impl Send for BorrowedStatement {}

impl BorrowedStatement {
    /// Prepares `sql` on `conn`, to be reused many times.
    pub fn prepare(conn: &Connection, sql: &str) -> Result<BorrowedStatement, rusqlite::Error> {
        let len = c_int::try_from(sql.len()).map_err(|_| rusqlite::Error::InvalidQuery)?;
        // SAFETY: the handle is valid while `conn` lives; the caller keeps the statement
        // no longer than that (see the type's doc).
        let db = unsafe { conn.handle() };
        let mut stmt = ptr::null_mut();
        // SAFETY: `sql` is valid for `len` bytes; `stmt` receives the new statement.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db,
                sql.as_ptr().cast::<c_char>(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK || stmt.is_null() {
            if !stmt.is_null() {
                // SAFETY: a statement that was made is finalized once.
                unsafe { ffi::sqlite3_finalize(stmt) };
            }
            return Err(error(
                db,
                if rc == ffi::SQLITE_OK {
                    ffi::SQLITE_MISUSE
                } else {
                    rc
                },
            ));
        }
        Ok(BorrowedStatement { stmt, db })
    }

    /// Binds `params` (in order, from the first parameter), runs the statement to its
    /// end and returns the number of rows it changed.
    pub fn execute(&mut self, params: &[Param<'_>]) -> Result<usize, rusqlite::Error> {
        let result = self.bind_and_step(params);
        // SAFETY: the statement is valid; after these no pointer into `params` is held.
        unsafe {
            ffi::sqlite3_reset(self.stmt);
            ffi::sqlite3_clear_bindings(self.stmt);
        }
        result
    }

    fn bind_and_step(&mut self, params: &[Param<'_>]) -> Result<usize, rusqlite::Error> {
        // SAFETY: the statement is valid.
        let count = unsafe { ffi::sqlite3_bind_parameter_count(self.stmt) };
        if usize::try_from(count) != Ok(params.len()) {
            return Err(rusqlite::Error::InvalidParameterCount(
                params.len(),
                count as usize,
            ));
        }
        for (i, p) in (1..).zip(params) {
            // SAFETY: `i` is within the statement's parameters; text stays borrowed
            // until `execute` has reset the statement and cleared the bindings.
            let rc = unsafe {
                match *p {
                    Param::Int(v) => ffi::sqlite3_bind_int64(self.stmt, i, v),
                    Param::Text(None) => ffi::sqlite3_bind_null(self.stmt, i),
                    Param::Text(Some(s)) => {
                        let len = c_int::try_from(s.len()).map_err(|_| {
                            rusqlite::Error::ToSqlConversionFailure("text longer than 2 GiB".into())
                        })?;
                        ffi::sqlite3_bind_text(
                            self.stmt,
                            i,
                            s.as_ptr().cast::<c_char>(),
                            len,
                            ffi::SQLITE_STATIC(),
                        )
                    }
                }
            };
            if rc != ffi::SQLITE_OK {
                return Err(error(self.db, rc));
            }
        }
        // SAFETY: the statement is valid and fully bound.
        match unsafe { ffi::sqlite3_step(self.stmt) } {
            ffi::SQLITE_DONE => {
                // SAFETY: the connection is valid.
                let n = unsafe { ffi::sqlite3_changes64(self.db) };
                Ok(usize::try_from(n).unwrap_or(0))
            }
            ffi::SQLITE_ROW => Err(rusqlite::Error::ExecuteReturnedResults),
            rc => Err(error(self.db, rc)),
        }
    }
}

impl Drop for BorrowedStatement {
    fn drop(&mut self) {
        // SAFETY: the statement is finalized once, before its connection closes.
        unsafe { ffi::sqlite3_finalize(self.stmt) };
    }
}

/// The connection's error for `rc`, with SQLite's message.
fn error(db: *mut ffi::sqlite3, rc: c_int) -> rusqlite::Error {
    // SAFETY: the connection is valid; the message is copied before any other call.
    let message = unsafe {
        let m = ffi::sqlite3_errmsg(db);
        (!m.is_null()).then(|| CStr::from_ptr(m).to_string_lossy().into_owned())
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_text_ints_and_nulls_and_reports_errors() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c TEXT UNIQUE)")
            .unwrap();
        let mut s = BorrowedStatement::prepare(&conn, "INSERT INTO t VALUES (?, ?, ?)").unwrap();
        let owned = String::from("borrowed text");
        assert_eq!(
            s.execute(&[Param::Int(1), Param::Text(Some(&owned)), Param::Text(None)])
                .unwrap(),
            1
        );
        drop(owned);
        let e = s
            .execute(&[Param::Int(1), Param::Text(Some("x")), Param::Text(None)])
            .unwrap_err();
        assert!(e.to_string().contains("UNIQUE"), "{e}");
        assert!(matches!(
            s.execute(&[Param::Int(2)]),
            Err(rusqlite::Error::InvalidParameterCount(1, 3))
        ));
        assert_eq!(
            s.execute(&[Param::Int(2), Param::Text(Some("")), Param::Text(Some("c"))])
                .unwrap(),
            1
        );
        let rows: Vec<(i64, String, Option<String>)> = conn
            .prepare("SELECT a, b, c FROM t ORDER BY a")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            [
                (1, "borrowed text".to_owned(), None),
                (2, String::new(), Some("c".to_owned()))
            ]
        );
        assert!(BorrowedStatement::prepare(&conn, "INSERT INTO nowhere VALUES (1)").is_err());
    }
}
