//! The `log` facade, wired to two outputs: a JSON-lines file and stderr.
//!
//! The file is what a logging sidecar tails, so each record is one JSON object on one
//! line, written with a single `write` on a file opened for append: a reader never sees
//! a torn line, even with several threads logging at once. Stderr gets the ordinary
//! human-readable `env_logger` format. Both honour `RUST_LOG` (default `info`).
//!
//! Structured fields travel as `log` key-values:
//! `info!(target: "request", status = 200, path = "/users"; "Request handled.")`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use env_logger::fmt::Formatter;
use log::kv::{Key, Value, VisitSource};
use serde_json::{Map, Value as Json};

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogInitError {
    #[error("cannot create log directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot open log file {path} for appending: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("a logger is already installed")]
    AlreadySet(#[from] log::SetLoggerError),
}

/// Opens `path` for appending, creating it and its directory when missing.
pub fn open_append(path: &Path) -> Result<File, LogInitError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|source| LogInitError::CreateDir {
            path: dir.to_owned(),
            source,
        })?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogInitError::Open {
            path: path.to_owned(),
            source,
        })
}

/// Installs the global logger: stderr always, plus the JSON-lines `file` when given.
pub fn init(service: &str, file: Option<&Path>) -> Result<(), LogInitError> {
    let stderr = filtered_builder()
        .target(env_logger::Target::Stderr)
        .build();
    let mut loggers = vec![stderr];
    if let Some(path) = file {
        let out = open_append(path)?;
        let service = service.to_owned();
        let json = filtered_builder()
            .format(move |buf, record| write_json_line(buf, &service, record))
            .target(env_logger::Target::Pipe(Box::new(out)))
            .build();
        loggers.push(json);
    }
    let max = loggers
        .iter()
        .map(|l| l.filter())
        .max()
        .unwrap_or(log::LevelFilter::Info);
    log::set_boxed_logger(Box::new(Tee(loggers)))?;
    log::set_max_level(max);
    Ok(())
}

fn filtered_builder() -> env_logger::Builder {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
}

/// Sends each record to several `env_logger`s, each with its own format and target.
struct Tee(Vec<env_logger::Logger>);

impl log::Log for Tee {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.iter().any(|l| l.enabled(metadata))
    }

    fn log(&self, record: &log::Record<'_>) {
        for l in &self.0 {
            if l.matches(record) {
                l.log(record);
            }
        }
    }

    fn flush(&self) {
        for l in &self.0 {
            l.flush();
        }
    }
}

/// Renders one record as a JSON object followed by a newline.
pub fn json_record(service: &str, record: &log::Record<'_>) -> Json {
    let mut obj = Map::new();
    obj.insert(
        "timestamp".into(),
        Utc::now()
            .to_rfc3339_opts(SecondsFormat::Micros, true)
            .into(),
    );
    obj.insert("service".into(), service.into());
    obj.insert("level".into(), record.level().as_str().into());
    obj.insert("logger".into(), record.target().into());
    obj.insert("message".into(), record.args().to_string().into());
    let mut fields = Fields(&mut obj);
    // Visiting an in-memory source cannot fail.
    let _ = record.key_values().visit(&mut fields);
    Json::Object(obj)
}

fn write_json_line(buf: &mut Formatter, service: &str, record: &log::Record<'_>) -> io::Result<()> {
    let mut line = serde_json::to_vec(&json_record(service, record))?;
    line.push(b'\n');
    buf.write_all(&line)
}

/// Copies key-values into the JSON object, keeping numbers and booleans as such.
struct Fields<'a>(&'a mut Map<String, Json>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let json = if let Some(s) = value.to_borrowed_str() {
            Json::from(s)
        } else if let Some(b) = value.to_bool() {
            Json::from(b)
        } else if let Some(n) = value.to_u64() {
            Json::from(n)
        } else if let Some(n) = value.to_i64() {
            Json::from(n)
        } else if let Some(n) = value.to_f64() {
            serde_json::Number::from_f64(n).map_or(Json::Null, Json::Number)
        } else {
            Json::from(value.to_string())
        };
        self.0.insert(key.as_str().to_owned(), json);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_flat_json_objects() {
        let kvs: &[(&str, Value<'_>)] = &[
            ("status", Value::from(404u16)),
            ("path", Value::from("/users/9")),
            ("duration_ms", Value::from(1.25f64)),
            ("ok", Value::from(false)),
        ];
        let args = format_args!("Request handled.");
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("request")
            .key_values(&kvs)
            .build();
        let json = json_record("user-service", &record);
        assert_eq!(json["service"], "user-service");
        assert_eq!(json["level"], "INFO");
        assert_eq!(json["message"], "Request handled.");
        assert_eq!(json["status"], 404);
        assert_eq!(json["path"], "/users/9");
        assert_eq!(json["duration_ms"], 1.25);
        assert_eq!(json["ok"], false);
        let ts = json["timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok());
        assert!(ts.ends_with('Z'));
    }

    #[test]
    fn open_append_creates_the_directory_and_reports_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/app.log");
        let mut f = open_append(&path).unwrap();
        f.write_all(b"x\n").unwrap();
        let mut f = open_append(&path).unwrap();
        f.write_all(b"y\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "x\ny\n");

        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").unwrap();
        let err = open_append(&blocker.join("app.log")).unwrap_err();
        assert!(err.to_string().contains("cannot"), "{err}");
    }
}
