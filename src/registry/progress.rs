//! Progress of blob transfers: indicatif bars when stderr is a terminal,
//! otherwise one log line per finished blob with its size, time and rate.

use crate::image::Digest;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Instant;

/// Where transfer progress goes.
#[derive(Debug)]
pub(crate) struct Progress {
    bars: Option<MultiProgress>,
}

/// One blob's transfer.
#[derive(Debug)]
pub(crate) struct Transfer {
    bar: Option<ProgressBar>,
    verb: &'static str,
    label: String,
    size: u64,
    started: Instant,
}

impl Progress {
    pub(crate) fn new(bars: bool) -> Progress {
        Progress {
            bars: bars.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// Starts showing a transfer; `verb` is past tense ("downloaded", "uploaded").
    pub(crate) fn start(&self, verb: &'static str, digest: &Digest, size: u64) -> Transfer {
        let label = short(digest);
        let bar = self.bars.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(size));
            let style = ProgressStyle::with_template(
                "{prefix} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(label.clone());
            bar
        });
        Transfer {
            bar,
            verb,
            label,
            size,
            started: Instant::now(),
        }
    }
}

impl Transfer {
    pub(crate) fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    /// The bar, for a body stream that must own what it touches.
    pub(crate) fn bar(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }

    /// Starting again after a failed attempt.
    pub(crate) fn restart(&self) {
        if let Some(b) = &self.bar {
            b.set_position(0);
        }
    }

    /// The transfer is done: the blob went over the wire, or, when `how`
    /// says so, the registry already had it or mounted it.
    pub(crate) fn finish(self, how: Option<&str>) {
        let size = self.size;
        let secs = self.started.elapsed().as_secs_f64();
        if let Some(b) = self.bar {
            b.finish_and_clear();
        }
        match how {
            Some(how) => log::info!("blob {} {how}", self.label),
            None => log::info!(
                "blob {} {} ({} in {secs:.2} s, {}/s)",
                self.label,
                self.verb,
                human(size as f64),
                human(size as f64 / secs.max(0.001))
            ),
        }
    }
}

/// `sha256:0123456789ab`
fn short(digest: &Digest) -> String {
    let hex = digest.hex();
    format!("{}:{}", digest.algorithm(), &hex[..hex.len().min(12)])
}

/// Bytes in decimal units, one decimal: `41.8 MB`.
pub fn human_size(bytes: u64) -> String {
    human(bytes as f64)
}

fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(human(512.0), "512 B");
        assert_eq!(human(1_500_000.0), "1.5 MB");
        assert_eq!(human(2_000_000_000.0), "2.0 GB");
        assert_eq!(short(&Digest::sha256(b"")), "sha256:e3b0c44298fc");
    }
}
