//! A `POST /logs` body, as the aggregator decodes it: the first byte picks the framing
//! (JSON or NDJSON) and whether the rest is gzip; then decompression and parsing within
//! a record limit and a memory allowance.
//!
//! Checked: no panic; an accepted batch is never empty, never over the record limit,
//! and each stored body is one JSON object carrying `aggregator_received_at` once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use log_aggregator::batch::{self, Within};
use log_aggregator::body::{self, Allowance, BodyError, Format};
use log_aggregator::record::{Received, RECEIVED_AT};
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

const MAX_RECORDS: usize = 1_000;
const LIMIT: usize = 1 << 20;

/// Grants up to a fixed number of bytes, as the ingest memory budget does.
struct Capped(usize);

impl Allowance for Capped {
    fn take(&mut self, bytes: usize) -> Result<(), BodyError> {
        self.0 = self
            .0
            .checked_sub(bytes)
            .ok_or(BodyError::OverBudget { limit: 0 })?;
        Ok(())
    }

    fn give_back(&mut self, bytes: usize) {
        self.0 += bytes;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let format = if mode & 1 == 0 {
        Format::Json
    } else {
        Format::Ndjson
    };
    let mut allowance = Capped(64 << 20);
    let decoded;
    let text = if mode & 2 != 0 {
        match body::gunzip_within(rest, LIMIT, &mut allowance) {
            Ok(d) => {
                assert!(d.len() <= LIMIT);
                decoded = d;
                &decoded[..]
            }
            Err(_) => return,
        }
    } else {
        rest
    };
    let within = Within {
        max_records: MAX_RECORDS,
        allowance: &mut allowance,
    };
    let Ok(records) = batch::parse_batch_within(text, format, &Received::now(), within) else {
        return;
    };
    assert!(!records.is_empty() && records.len() <= MAX_RECORDS);
    for r in &records {
        // The shared record validator refuses what would not read back (a lone surrogate
        // escape, a number out of range), so every stored body reads back strictly.
        let object: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(&r.body)
        {
            Ok(object) => object,
            Err(e) => panic!("a stored body is not a JSON object: {e}: {:?}", r.body),
        };
        assert!(object[RECEIVED_AT].is_string());
        assert_eq!(top_level_count(&r.body, RECEIVED_AT), 1, "{}", r.body);
    }
});

/// How many times `key` is a key of the top-level object of `json` (a `Map` would keep
/// only the last of duplicates).
fn top_level_count(json: &str, key: &str) -> usize {
    struct Count<'k>(&'k str);
    impl<'de> Visitor<'de> for Count<'_> {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<usize, M::Error> {
            let mut n = 0;
            while let Some(k) = map.next_key::<String>()? {
                n += usize::from(k == self.0);
                map.next_value::<IgnoredAny>()?;
            }
            Ok(n)
        }
    }
    serde_json::Deserializer::from_str(json)
        .deserialize_map(Count(key))
        .expect("an object")
}
