//! Port prediction and birthday probing in the simulator (issue 4): the
//! matrix cells they open, the chatty-neighbour limit, and the birthday
//! arithmetic checked against many simulated runs.

use punchline_core::client::{birthday_success, BIRTHDAY_PORTS};
use punchline_sim::engine::Simulation;
use punchline_sim::matrix::{self, pair_scenario};
use punchline_sim::nat::Preset;
use punchline_sim::report::Outcome;
use punchline_sim::scenario::Scenario;

/// Runs `scenario` and returns its only connection's outcome and strategy.
fn outcome(scenario: Scenario) -> (Outcome, Option<String>, u64) {
    let (report, _, _) = Simulation::new(scenario, None).expect("valid scenario").run();
    let c = report.connections.into_iter().next().expect("one connect event");
    (c.outcome, c.strategy, c.probes_from + c.probes_to)
}

#[test]
fn the_matrix_agrees_with_the_oracle_over_ten_seeds() {
    // Given every ordered pair of presets, ten seeds each,
    let m = matrix::run(10, |_, _| {});
    // then every cell agrees with the oracle (relay-only cells without a probe),
    let disagreeing: Vec<String> =
        m.cells.iter().filter(|c| !c.agrees()).map(|c| format!("{} / {}: {c:?}", c.a, c.b)).collect();
    assert!(disagreeing.is_empty(), "{disagreeing:#?}");
    assert_eq!(m.mismatches, 0);
    // and the cells issue 4 opened are direct by the strategy meant for them.
    let cell = |a: &str, b: &str| m.cells.iter().find(|c| c.a == a && c.b == b).expect("cell ran");
    for (a, b, strategy) in [
        ("port-restricted-cone", "symmetric-sequential", "predict"),
        ("symmetric-sequential", "port-restricted-cone", "predict"),
        ("symmetric-sequential", "symmetric-sequential", "predict"),
        ("port-restricted-cone", "symmetric-random", "birthday"),
        ("symmetric-random", "port-restricted-cone", "birthday"),
        ("linux", "linux-random", "birthday"),
        ("linux-random", "linux", "birthday"),
    ] {
        let c = cell(a, b);
        assert_eq!(c.strategy.as_deref(), Some(strategy), "{a} / {b}");
        assert!(c.direct >= 9, "{a} / {b}: {c:?}");
    }
    for (a, b) in [
        ("symmetric-random", "symmetric-random"),
        ("linux-random", "linux-random"),
        ("symmetric-random", "symmetric-sequential"),
        ("symmetric-sequential", "symmetric-random"),
    ] {
        let c = cell(a, b);
        assert_eq!((c.strategy.as_deref(), c.relay, c.probes_max), (Some("relay-only"), 10, 0), "{a} / {b}");
    }
}

#[test]
fn prediction_survives_a_neighbour_within_the_documented_rate() {
    // Given a sequential symmetric NAT whose other hosts open 100 flows per
    // second (the documented limit), facing a port-restricted cone,
    for seed in 0..20 {
        let mut scenario = pair_scenario(Preset::PortRestrictedCone, Preset::SymmetricSequential, seed);
        scenario.nats[1].overrides.background_flows = Some(100);
        // when the cone's peer connects,
        let (outcome, strategy, _) = outcome(scenario);
        // then the path is direct, by prediction.
        assert_eq!((outcome, strategy.as_deref()), (Outcome::Direct, Some("predict")), "seed {seed}");
    }
}

#[test]
fn birthday_success_rate_matches_the_closed_form() {
    // Given a small pool and budget, so that one attempt succeeds about 40 %
    // of the time, and no retry,
    let (pool, budget) = (64u32, 512u32);
    let runs = 150u64;
    let mut direct = 0u32;
    for seed in 0..runs {
        let mut scenario = pair_scenario(Preset::Linux, Preset::LinuxRandom, seed);
        for peer in &mut scenario.peers {
            let config = &mut peer.config.values;
            config.insert("birthday_pool".into(), toml::Value::Integer(i64::from(pool)));
            config.insert("birthday_probe_budget".into(), toml::Value::Integer(i64::from(budget)));
            config.insert("max_punch_attempts".into(), toml::Value::Integer(1));
        }
        // when each seed runs one birthday attempt,
        let (outcome, strategy, probes) = outcome(scenario);
        assert_eq!(strategy.as_deref(), Some("birthday"));
        assert_ne!(outcome, Outcome::Failed, "seed {seed}: the relay always works");
        if outcome == Outcome::Relay {
            // A miss spent exactly the budget, and the attempt was not retried.
            assert_eq!(probes, u64::from(budget), "seed {seed}");
        }
        direct += u32::from(outcome == Outcome::Direct);
    }
    // then the share of direct runs is the closed form's, within four standard errors.
    let range = u32::from(BIRTHDAY_PORTS.1 - BIRTHDAY_PORTS.0) + 1;
    let expected = birthday_success(range, pool, budget);
    let observed = f64::from(direct) / runs as f64;
    let sigma = (expected * (1.0 - expected) / runs as f64).sqrt();
    eprintln!("birthday: {direct}/{runs} direct, observed {observed:.3}, closed form {expected:.3}");
    assert!((observed - expected).abs() < 4.0 * sigma, "observed {observed:.3}, closed form {expected:.3}");
}
