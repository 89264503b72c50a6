//! ClickHouse's `RowBinary` format, both ways: the bulk format of inserts and of the
//! answers read back. Lengths and little-endian numbers, no escaping, so any text (any
//! byte a JSON string may hold) goes through unchanged, and nothing is parsed twice.

use super::http::ChError;

/// Appends rows in `RowBinary`.
#[derive(Debug, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(bytes: usize) -> Writer {
        Writer {
            buf: Vec::with_capacity(bytes),
        }
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// `String`: a LEB128 length, then the bytes.
    pub fn string(&mut self, v: &str) {
        let mut n = v.len() as u64;
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.buf.push(byte);
                break;
            }
            self.buf.push(byte | 0x80);
        }
        self.buf.extend_from_slice(v.as_bytes());
    }

    /// `Nullable(String)`: a byte saying null, then the value when there is one.
    pub fn nullable(&mut self, v: Option<&str>) {
        match v {
            None => self.buf.push(1),
            Some(v) => {
                self.buf.push(0);
                self.string(v);
            }
        }
    }
}

/// Reads rows of `RowBinary`; every read checks the length, so a cut or foreign answer
/// is an error, never a panic.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
}

fn cut() -> ChError {
    ChError::Answer("a RowBinary answer ended in the middle of a row".to_owned())
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ChError> {
        if self.data.len() < n {
            return Err(cut());
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn eight(&mut self) -> Result<[u8; 8], ChError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(b)
    }

    pub fn i64(&mut self) -> Result<i64, ChError> {
        Ok(i64::from_le_bytes(self.eight()?))
    }

    pub fn u64(&mut self) -> Result<u64, ChError> {
        Ok(u64::from_le_bytes(self.eight()?))
    }

    pub fn u8(&mut self) -> Result<u8, ChError> {
        Ok(self.take(1)?[0])
    }

    pub fn string(&mut self) -> Result<String, ChError> {
        let mut n: u64 = 0;
        let mut shift = 0;
        loop {
            let byte = self.u8()?;
            if shift > 63 {
                return Err(ChError::Answer("a string length is too long".to_owned()));
            }
            n |= u64::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let n = usize::try_from(n).map_err(|_| cut())?;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| ChError::Answer("a stored text is not UTF-8".to_owned()))
    }

    pub fn nullable(&mut self) -> Result<Option<String>, ChError> {
        match self.u8()? {
            0 => self.string().map(Some),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_as_written() {
        let long = "é".repeat(300);
        let mut w = Writer::default();
        w.i64(-5);
        w.u64(u64::MAX);
        w.string(&long);
        w.nullable(None);
        w.nullable(Some("x\n'\\"));
        let mut r = Reader::new(&w.buf);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.string().unwrap(), long);
        assert_eq!(r.nullable().unwrap(), None);
        assert_eq!(r.nullable().unwrap().as_deref(), Some("x\n'\\"));
        assert!(r.is_empty());
        // Cut anywhere: an error, never a panic.
        for end in 0..w.buf.len() {
            let mut r = Reader::new(&w.buf[..end]);
            let all = (|| {
                r.i64()?;
                r.u64()?;
                r.string()?;
                r.nullable()?;
                r.nullable()
            })();
            assert!(all.is_err(), "{end}");
        }
    }
}
