//! The file-transfer sweep (`punchline-sim files --quick`), run in process:
//! every issue 22 simulator target is met. Virtual time is deterministic,
//! so this checks behaviour (how much the core's controller delivers in a
//! given simulated network), not the machine's speed.

use punchline_sim::file_sweep::{self, Options};

#[test]
fn every_file_transfer_target_is_met_in_the_quick_sweep() {
    // Given the quick sweep's scenarios (throughput, loss, fairness,
    // migration, interruption, jitter) on one seed,
    let options = Options { seeds: 1, quick: true, threads: 2 };
    // when they run,
    let sweep = file_sweep::run(options, |_, _| {});
    // then every target's figure reaches its bound, and every transfer that
    // counted arrived verified.
    assert_eq!(sweep.targets.len(), 8, "{}", sweep.table());
    assert_eq!(sweep.unmet, 0, "{}", sweep.table());
    for t in &sweep.targets {
        for run in &t.runs {
            assert!(run.files.iter().all(|f| f.verified), "{}: {:?}\n{}", t.target, run.files, sweep.table());
        }
    }
}
