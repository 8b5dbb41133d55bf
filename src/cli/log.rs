//! The logger behind `log::…!`: kaniko's `--verbosity`, `--log-format`
//! (text, color, json) and `--log-timestamp`, on stderr. Colour only on a
//! terminal and never when `NO_COLOR` is set.

use super::flags::FlagError;
use std::io::{IsTerminal, Write};
use std::time::Instant;

#[derive(Debug)]
struct Logger {
    level: log::LevelFilter,
    json: bool,
    color: bool,
    timestamp: bool,
    start: Instant,
}

impl log::Log for Logger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) || !record.target().starts_with("smelt") {
            return;
        }
        let msg = record.args().to_string();
        let line = if self.json {
            let obj = serde_json::json!({
                "level": record.level().as_str().to_ascii_lowercase(),
                "msg": msg,
                "time": jiff::Timestamp::now().to_string(),
            });
            obj.to_string()
        } else {
            let (name, code) = match record.level() {
                log::Level::Error => ("ERRO", 31),
                log::Level::Warn => ("WARN", 33),
                log::Level::Info => ("INFO", 36),
                log::Level::Debug => ("DEBU", 37),
                log::Level::Trace => ("TRAC", 37),
            };
            let when = if self.timestamp {
                jiff::Timestamp::now().to_string()
            } else {
                format!("{:04}", self.start.elapsed().as_secs())
            };
            if self.color {
                format!("\x1b[{code}m{name}\x1b[0m[{when}] {msg}")
            } else {
                format!("{name}[{when}] {msg}")
            }
        };
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn flush(&self) {}
}

/// Installs the logger; an unknown level or format is a usage error.
pub fn init(verbosity: &str, format: &str, timestamp: bool) -> Result<(), FlagError> {
    let level = match verbosity {
        "trace" => log::LevelFilter::Trace,
        "debug" => log::LevelFilter::Debug,
        "info" => log::LevelFilter::Info,
        "warn" | "warning" => log::LevelFilter::Warn,
        "error" | "fatal" | "panic" => log::LevelFilter::Error,
        other => return Err(FlagError::Verbosity(other.to_string())),
    };
    let (json, color) = match format {
        "json" => (true, false),
        "text" => (false, false),
        "color" => (
            false,
            std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        ),
        other => return Err(FlagError::LogFormat(other.to_string())),
    };
    let logger = Logger {
        level,
        json,
        color,
        timestamp,
        start: Instant::now(),
    };
    // a second init (tests calling run twice) keeps the first logger
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
    Ok(())
}
