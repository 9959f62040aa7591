//! DESIGN §4: one seed drives everything, so the same seed and scenario give
//! the same trace byte for byte, the same `trace_hash` and the same JSON.

use std::path::{Path, PathBuf};

use punchline_sim::engine::Simulation;
use punchline_sim::report::Report;
use punchline_sim::scenario::Scenario;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "the examples are there: {files:?}");
    files
}

fn run(file: &Path, seed: Option<u64>) -> (Report, Vec<String>) {
    let scenario = Scenario::load(file).unwrap();
    let mut sim = Simulation::new(scenario, seed).unwrap();
    sim.keep_trace(true);
    let (report, trace, _) = sim.run();
    (report, trace)
}

#[test]
fn every_example_runs_the_same_twice() {
    for file in examples() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (r1, t1) = run(&file, None);
        let (r2, t2) = run(&file, None);
        assert!(!t1.is_empty(), "{name}: a trace was kept");
        assert_eq!(r1.trace_hash, r2.trace_hash, "{name}: trace_hash");
        let j1 = serde_json::to_string(&r1).unwrap();
        let j2 = serde_json::to_string(&r2).unwrap();
        assert_eq!(j1, j2, "{name}: JSON report");
        if let Some(i) = t1.iter().zip(&t2).position(|(a, b)| a != b) {
            panic!("{name}: traces differ at line {}:\n  {}\n  {}", i + 1, t1[i], t2[i]);
        }
        assert_eq!(t1.len(), t2.len(), "{name}: trace length");
    }
}

#[test]
fn keeping_the_trace_does_not_change_the_run() {
    for file in examples() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (kept, _) = run(&file, None);
        let sim = Simulation::new(Scenario::load(&file).unwrap(), None).unwrap();
        let (plain, _, _) = sim.run();
        assert_eq!(
            serde_json::to_string(&kept).unwrap(),
            serde_json::to_string(&plain).unwrap(),
            "{name}: keep_trace changes the report"
        );
    }
}

#[test]
fn skipping_the_trace_changes_nothing_but_the_hash() {
    for file in examples() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        // Given the same run traced and with its trace skipped (as the
        // matrix runs),
        let (traced, _) = run(&file, None);
        let mut sim = Simulation::new(Scenario::load(&file).unwrap(), None).unwrap();
        sim.skip_trace();
        let (mut skipped, lines, _) = sim.run();
        // then nothing was traced, and the report is the same but for the
        // hash: no decision of the run depends on its trace.
        assert!(lines.is_empty(), "{name}: no trace lines");
        assert_eq!(skipped.trace_hash, "", "{name}: no hash without a trace");
        skipped.trace_hash = traced.trace_hash.clone();
        assert_eq!(
            serde_json::to_string(&traced).unwrap(),
            serde_json::to_string(&skipped).unwrap(),
            "{name}: skipping the trace changes the report"
        );
    }
}

#[test]
fn reporting_progress_does_not_change_the_run() {
    for file in examples() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        // Given the same run at once and with progress reports,
        let (plain, plain_trace) = run(&file, None);
        let mut sim = Simulation::new(Scenario::load(&file).unwrap(), None).unwrap();
        sim.keep_trace(true);
        let mut seen = Vec::new();
        let (report, trace, _) = sim.run_with_progress(|now, end| seen.push((now, end)));
        // then the trace and report are identical,
        assert_eq!(plain_trace, trace, "{name}: trace");
        assert_eq!(serde_json::to_string(&plain).unwrap(), serde_json::to_string(&report).unwrap(), "{name}");
        // and progress went forward to the end, in many steps.
        let end = seen.last().expect("progress was reported").1;
        assert_eq!(seen.last().unwrap().0, end, "{name}: ends at the end");
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "{name}: time only moves forward");
        assert!(seen.len() >= 100, "{name}: {} reports", seen.len());
    }
}

#[test]
fn an_explicit_seed_equal_to_the_files_gives_the_same_run() {
    for file in examples() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let (r, _) = run(&file, None);
        let (same, _) = run(&file, Some(r.seed));
        assert_eq!(r.seed, same.seed, "{name}");
        assert_eq!(r.trace_hash, same.trace_hash, "{name}");
    }
}

#[test]
fn another_seed_gives_another_trace() {
    let mut differing = Vec::new();
    for file in examples() {
        let (r, t) = run(&file, None);
        let (other, other_trace) = run(&file, Some(r.seed.wrapping_add(1000)));
        assert_eq!(other.seed, r.seed.wrapping_add(1000), "the seed override is honoured");
        if other.trace_hash != r.trace_hash {
            assert_ne!(t, other_trace, "different hashes of the same trace");
            differing.push(file);
        }
    }
    assert!(!differing.is_empty(), "no scenario's trace depends on its seed");
}
