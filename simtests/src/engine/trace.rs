//! The event trace: one line per event, hashed whether or not it is kept.
//!
//! Each part of the world (see `engine::inbox::Part`) formats its lines
//! into a [`Lines`] buffer of its own, so the parts can run on two threads.
//! The [`Trace`] then takes the buffers in, in the world's order of events
//! (time, then part at the same instant), hashes every line and keeps them
//! when the caller asked (`--trace`). The hash is therefore a function of
//! exactly the text `--trace` prints, line by line, and is the same with or
//! without `--trace`, on one thread or two.

use std::fmt::{self, Write as _};
use std::time::Duration;

use smallvec::SmallVec;

use super::Arrow;

/// One part's trace lines (and Mermaid arrows) not yet taken in by the
/// [`Trace`], each marked with its event's time.
pub(crate) struct Lines {
    /// False when the run skips the trace altogether (see
    /// [`super::Simulation::skip_trace`]): nothing is formatted.
    on: bool,
    /// The lines, one after the other, each with its time prefix.
    text: String,
    /// Where each line ends in `text`, and its event's time in nanoseconds.
    ends: Vec<(u64, usize)>,
    keep_arrows: bool,
    arrows: Vec<Arrow>,
}

impl Lines {
    pub(crate) fn new() -> Lines {
        Lines { on: true, text: String::with_capacity(4096), ends: Vec::new(), keep_arrows: false, arrows: Vec::new() }
    }

    /// Whether lines are formatted at all; callers skip building costly
    /// arguments (datagram descriptions) when not.
    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    /// Whether datagrams are kept for a Mermaid diagram.
    pub(crate) fn keeps_arrows(&self) -> bool {
        self.keep_arrows
    }

    /// Records the line `text` at simulated time `now`: `{ms:>10.3}ms {text}`.
    pub(crate) fn record(&mut self, now: Duration, text: fmt::Arguments<'_>) {
        self.record_with(now, |line| line.write_fmt(text));
    }

    /// Records the line that `write` writes after the time prefix, for hot
    /// lines that write their pieces directly instead of through `format_args!`.
    pub(crate) fn record_with(&mut self, now: Duration, write: impl FnOnce(&mut String) -> fmt::Result) {
        if !self.on {
            return;
        }
        write_time(&mut self.text, now);
        self.text.push(' ');
        // Writing into a String cannot fail; a Display impl that reports an
        // error would only truncate the line, never stop the run.
        let _ = write(&mut self.text);
        self.ends.push((nanos(now), self.text.len()));
    }

    pub(crate) fn push_arrow(&mut self, arrow: Arrow) {
        if self.keep_arrows {
            self.arrows.push(arrow);
        }
    }

    /// The `i`-th line and its time.
    fn line(&self, i: usize) -> (u64, &str) {
        let start = if i == 0 { 0 } else { self.ends[i - 1].1 };
        let (at, end) = self.ends[i];
        (at, &self.text[start..end])
    }

    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }
}

/// The run's trace: every line hashed, and kept when asked.
pub(crate) struct Trace {
    /// False when the run skips the trace altogether.
    on: bool,
    keep: bool,
    lines: Vec<String>,
    hash: u64,
    arrows: Vec<Arrow>,
}

impl Trace {
    pub(crate) fn new() -> Trace {
        Trace { on: true, keep: false, lines: Vec::new(), hash: HASH_SEED, arrows: Vec::new() }
    }

    pub(crate) fn keep_lines(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// Turns the trace off for good, here and in every part's buffer:
    /// lines are neither formatted, hashed nor kept.
    pub(crate) fn turn_off<'a>(&mut self, parts: impl IntoIterator<Item = &'a mut Lines>) {
        self.on = false;
        self.keep = false;
        for lines in parts {
            lines.on = false;
            lines.clear();
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    pub(crate) fn keep_arrows<'a>(keep: bool, parts: impl IntoIterator<Item = &'a mut Lines>) {
        for lines in parts {
            lines.keep_arrows = keep;
        }
    }

    /// Takes in every part's lines and arrows, in the world's order: by
    /// time, and at the same instant by part (in the order of
    /// `engine::inbox::Part`). Each buffer is already in its part's order.
    pub(crate) fn take_in(&mut self, parts: &mut [&mut Lines]) {
        if parts.iter().all(|lines| lines.ends.is_empty() && lines.arrows.is_empty()) {
            return;
        }
        let mut next: SmallVec<[usize; 8]> = smallvec::smallvec![0; parts.len()];
        loop {
            // The earliest head; the first part on a tie.
            let mut best: Option<(usize, u64)> = None;
            for (part, lines) in parts.iter().enumerate() {
                if let Some(&(at, _)) = lines.ends.get(next[part]) {
                    if best.is_none_or(|(_, best_at)| at < best_at) {
                        best = Some((part, at));
                    }
                }
            }
            let Some((part, _)) = best else { break };
            let (_, line) = parts[part].line(next[part]);
            next[part] += 1;
            self.hash = hash_line(self.hash, line.as_bytes());
            if self.keep {
                self.lines.push(line.to_owned());
            }
        }
        let mut heads: SmallVec<[usize; 8]> = smallvec::smallvec![0; parts.len()];
        loop {
            let mut best: Option<(usize, Duration)> = None;
            for (part, lines) in parts.iter().enumerate() {
                if let Some(arrow) = lines.arrows.get(heads[part]) {
                    if best.is_none_or(|(_, best_at)| arrow.at < best_at) {
                        best = Some((part, arrow.at));
                    }
                }
            }
            let Some((part, _)) = best else { break };
            self.arrows.push(parts[part].arrows[heads[part]].clone());
            heads[part] += 1;
        }
        for lines in parts.iter_mut() {
            lines.clear();
            lines.arrows.clear();
        }
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    pub(crate) fn take(&mut self) -> (Vec<String>, Vec<Arrow>) {
        (std::mem::take(&mut self.lines), std::mem::take(&mut self.arrows))
    }
}

/// `at` in whole nanoseconds, saturating at `u64::MAX`.
fn nanos(at: Duration) -> u64 {
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
}

/// Writes `now` in milliseconds exactly as `format!("{:>10.3}ms", ms)` with
/// `ms = now.as_secs_f64() * 1000.0` would.
///
/// The integer path rounds to the nearest microsecond. It agrees with the
/// float formatting whenever the nanoseconds are not exactly halfway between
/// two microseconds: the float's representation error (below 1e-12 ms for
/// any run shorter than a year) is then far smaller than the 1 ns distance
/// to the rounding boundary. Exact halves (where the float's error decides
/// the rounding) go through the float path itself.
fn write_time(out: &mut String, now: Duration) {
    let nanos = now.as_nanos();
    if nanos % 1000 == 500 {
        let _ = write!(out, "{:>10.3}ms", now.as_secs_f64() * 1000.0);
        return;
    }
    let micros = (nanos + 500) / 1000;
    let (whole, frac) = (micros / 1000, (micros % 1000) as u32);
    let mut digits = [0u8; 48];
    let mut at = digits.len();
    // Fraction: always three digits.
    let mut f = frac;
    for _ in 0..3 {
        at -= 1;
        digits[at] = b'0' + (f % 10) as u8;
        f /= 10;
    }
    at -= 1;
    digits[at] = b'.';
    let mut w = whole;
    loop {
        at -= 1;
        digits[at] = b'0' + (w % 10) as u8;
        w /= 10;
        if w == 0 {
            break;
        }
    }
    let text = &digits[at..];
    for _ in text.len()..10 {
        out.push(' ');
    }
    // Only ASCII digits and a dot were written.
    out.push_str(std::str::from_utf8(text).unwrap_or_default());
    out.push_str("ms");
}

const HASH_SEED: u64 = 0xcbf2_9ce4_8422_2325;
const HASH_MUL: u64 = 0x9e37_79b9_7f4a_7c15;

/// Folds one line into the running trace hash, eight bytes at a time, then
/// its length (so line boundaries count, as a newline would).
///
/// Not cryptographic: a fingerprint that two runs produced the same trace.
/// It depends only on the bytes, never on the platform (little-endian words).
fn hash_line(mut hash: u64, line: &[u8]) -> u64 {
    let mut chunks = line.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        hash = mix(hash, u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    let mut word = [0u8; 8];
    word[..rest.len()].copy_from_slice(rest);
    hash = mix(hash, u64::from_le_bytes(word));
    mix(hash, line.len() as u64)
}

fn mix(hash: u64, word: u64) -> u64 {
    let h = (hash ^ word).wrapping_mul(HASH_MUL);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(now: Duration) -> String {
        let mut s = String::new();
        write_time(&mut s, now);
        s
    }

    #[test]
    fn time_prefix_matches_the_float_formatting_for_every_rounding_case() {
        // Given times around every kind of rounding boundary, including
        // exact halves, carries into the next millisecond and big values,
        let mut cases = vec![0, 1, 499, 500, 501, 999, 1_000, 999_499, 999_500, 999_501, 19_038_123, 60_000_000_000];
        let mut x: u64 = 1;
        for _ in 0..20_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            cases.push(x % 3_600_000_000_000);
            cases.push((x % 3_600_000_000) * 1000 + 500);
        }
        for nanos in cases {
            let now = Duration::from_nanos(nanos);
            // when formatted both ways, then the text is the same.
            let expected = format!("{:>10.3}ms", now.as_secs_f64() * 1000.0);
            assert_eq!(time(now), expected, "{nanos} ns");
        }
    }

    #[test]
    fn the_hash_depends_on_line_boundaries_and_every_byte() {
        let one = hash_line(HASH_SEED, b"abcdefghij");
        let split = hash_line(hash_line(HASH_SEED, b"abcde"), b"fghij");
        assert_ne!(one, split);
        assert_ne!(one, hash_line(HASH_SEED, b"abcdefghik"));
        assert_ne!(hash_line(HASH_SEED, b""), hash_line(HASH_SEED, b"\0"));
        assert_eq!(one, hash_line(HASH_SEED, b"abcdefghij"));
    }
}
