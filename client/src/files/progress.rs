//! How a transfer's progress is shown: an `indicatif` bar on a terminal
//! (bytes, rate, ETA, path), one JSON line a second with `--json`, nothing
//! otherwise (output piped without `--json` gets the final line only).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

/// Between two JSON progress lines.
pub const JSON_EVERY: Duration = Duration::from_secs(1);

const BAR_TEMPLATE: &str = "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} ";

/// True when progress bars may be drawn: stderr is a terminal and the
/// output is not JSON.
pub fn bars_wanted(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// A bar of `size` bytes, drawn on stderr, with the common style.
pub fn bar(size: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A bar for the receiver's [`MultiProgress`].
pub fn bar_in(multi: &MultiProgress, size: u64) -> ProgressBar {
    multi.add(bar(size))
}

/// The sender's progress display.
#[derive(Debug)]
pub struct SendProgress {
    mode: Mode,
    name: String,
    size: u64,
    /// The last JSON line: when, and the bytes done then.
    last: Option<(Instant, u64)>,
}

#[derive(Debug)]
enum Mode {
    Bar(ProgressBar),
    Json,
    Quiet,
}

impl SendProgress {
    /// A display for `name` (`size` bytes) going to `peer`.
    pub fn new(json: bool, name: &str, size: u64, peer: &str) -> SendProgress {
        let mode = if json {
            Mode::Json
        } else if bars_wanted(false) {
            let b = bar(size);
            b.set_message(format!("{} → {} (waiting)", crate::display::escaped(name), crate::display::escaped(peer)));
            Mode::Bar(b)
        } else {
            Mode::Quiet
        };
        SendProgress { mode, name: name.to_owned(), size, last: None }
    }

    /// The peer accepted, holding `resumed` bytes already: they do not
    /// count toward the rate.
    pub fn accepted(&mut self, now: Instant, resumed: u64) {
        self.last = Some((now, resumed));
        if let Mode::Bar(b) = &self.mode {
            b.set_position(resumed);
            b.reset_eta();
        }
    }

    /// Progress now: `bytes` acknowledged (resumed ones included), over
    /// `path`. Redraws the bar; prints a JSON line when one is due.
    pub fn update(&mut self, now: Instant, bytes: u64, path: &str, peer: &str) {
        match &self.mode {
            Mode::Bar(b) => {
                b.set_message(format!(
                    "{} → {} ({path})",
                    crate::display::escaped(&self.name),
                    crate::display::escaped(peer)
                ));
                b.set_position(bytes);
            }
            Mode::Json => {
                let Some((at, before)) = self.last else { return };
                let elapsed = now.saturating_duration_since(at);
                if elapsed < JSON_EVERY {
                    return;
                }
                let secs = elapsed.as_secs_f64();
                let rate = bytes.saturating_sub(before) as f64 / secs;
                let eta = (rate > 0.0).then(|| (self.size.saturating_sub(bytes) as f64 / rate).round() as u64);
                println!(
                    "{}",
                    json!({"event": "progress", "name": self.name, "size": self.size, "bytes": bytes,
                        "rate_mbps": super::mbps(bytes.saturating_sub(before), secs), "eta_s": eta, "path": path})
                );
                self.last = Some((now, bytes));
            }
            Mode::Quiet => {}
        }
    }

    /// The transfer ended: the bar goes away (the final line says the rest).
    pub fn finish(&self) {
        if let Mode::Bar(b) = &self.mode {
            b.finish_and_clear();
        }
    }
}

/// A bar for hashing `size` bytes of `name`, on a terminal only.
pub fn hashing_bar(json: bool, name: &str, size: u64) -> Option<ProgressBar> {
    if !bars_wanted(json) {
        return None;
    }
    let b = bar(size);
    b.set_message(format!("hashing {}", crate::display::escaped(name)));
    Some(b)
}
