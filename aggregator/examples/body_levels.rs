//! What the zstd level of the segments' `body` column costs and saves: the bodies of
//! existing segments (a store the benchmark kept with `--keep DIR`) encoded again as the
//! store writes them — pages cut at 1,024-row blocks once they hold 256 KiB, one row
//! group per source row group — once per level, into memory.
//!
//! ```text
//! cargo run --release -p log-aggregator --example body_levels -- DIR/embedded/segments [LEVEL...]
//! ```
//!
//! Prints, per level, the compressed bytes per record and the CPU seconds per million
//! records of the encoding thread (levels 3, 6 and 9 by default).

use std::fs::File;
use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::column::reader::get_typed_column_reader;
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use shared::measure::thread_cpu_seconds;

/// The `body` column's position in a segment (`embedded::segment::COL_BODY`).
const COL_BODY: usize = 6;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next() else {
        eprintln!("usage: body_levels SEGMENT_DIR [LEVEL...]");
        std::process::exit(64);
    };
    if let Err(e) = run(&dir, args.collect()) {
        eprintln!("body_levels: {e}");
        std::process::exit(1);
    }
}

fn run(dir: &str, args: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let mut levels: Vec<i32> = args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
    if levels.is_empty() {
        levels = vec![3, 6, 9];
    }
    let mut groups: Vec<Vec<ByteArray>> = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{dir}: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    paths.sort();
    for path in &paths {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let reader = SerializedFileReader::new(file)?;
        for g in 0..reader.num_row_groups() {
            let group = reader.get_row_group(g)?;
            let rows = group.metadata().num_rows() as usize;
            let mut col =
                get_typed_column_reader::<ByteArrayType>(group.get_column_reader(COL_BODY)?);
            let mut values = Vec::with_capacity(rows);
            while values.len() < rows {
                let (n, _, _) = col.read_records(rows - values.len(), None, None, &mut values)?;
                if n == 0 {
                    break;
                }
            }
            groups.push(values);
        }
    }
    let records: usize = groups.iter().map(Vec::len).sum();
    let raw: usize = groups.iter().flatten().map(ByteArray::len).sum();
    println!(
        "{} segments, {records} records, {:.1} bytes of body per record",
        paths.len(),
        raw as f64 / records.max(1) as f64
    );
    println!("level  bytes/record  CPU s per million records");
    let schema = Arc::new(parse_message_type(
        "message m { required binary body (STRING); }",
    )?);
    for level in levels {
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::try_new(level)?))
                .set_write_batch_size(1024)
                .set_data_page_size_limit(256 << 10)
                .set_dictionary_enabled(false)
                .set_statistics_enabled(EnabledStatistics::None)
                .build(),
        );
        let cpu = thread_cpu_seconds();
        let mut w = SerializedFileWriter::new(Vec::new(), schema.clone(), props)?;
        for values in &groups {
            let mut rg = w.next_row_group()?;
            if let Some(mut c) = rg.next_column()? {
                c.typed::<ByteArrayType>().write_batch(values, None, None)?;
                c.close()?;
            }
            rg.close()?;
        }
        let bytes = w.into_inner()?.len();
        let cpu = thread_cpu_seconds() - cpu;
        println!(
            "{level:>5}  {:>12.1}  {:>24.2}",
            bytes as f64 / records.max(1) as f64,
            cpu / (records.max(1) as f64 / 1e6)
        );
    }
    Ok(())
}
