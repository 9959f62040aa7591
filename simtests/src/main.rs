//! `punchline-sim`: run NAT scenarios and the preset matrix.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use punchline_sim::engine::Simulation;
use punchline_sim::matrix;
use punchline_sim::report::mermaid;
use punchline_sim::scenario::Scenario;

/// Deterministic network and NAT simulator for Punchline.
#[derive(Parser)]
#[command(name = "punchline-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario file.
    Run {
        /// The scenario (TOML, see simtests/scenarios/).
        file: PathBuf,
        /// Override the scenario's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Print the JSON report.
        #[arg(long)]
        json: bool,
        /// Print the event trace (one line per event).
        #[arg(long)]
        trace: bool,
        /// Print a Mermaid sequence diagram of the run.
        #[arg(long)]
        mermaid: bool,
    },
    /// Run every ordered pair of NAT presets over several seeds and compare
    /// with the oracle. Exits 1 when any cell disagrees or any run failed.
    Matrix {
        /// Seeds per cell.
        #[arg(long, default_value_t = 10)]
        seeds: u32,
        /// Print the JSON report.
        #[arg(long)]
        json: bool,
        /// No progress indicator.
        #[arg(long)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { file, seed, json, trace, mermaid: diagram } => {
            let scenario = match Scenario::load(&file) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let participants: Vec<String> =
                std::iter::once("server".to_string()).chain(scenario.peers.iter().map(|p| p.name.clone())).collect();
            let mut sim = match Simulation::new(scenario, seed) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            sim.keep_trace(trace);
            sim.keep_arrows(diagram);
            let (report, lines, arrows) = sim.run();
            if trace {
                for line in &lines {
                    println!("{line}");
                }
            }
            if diagram {
                print!("{}", mermaid(&arrows, &participants));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
            } else if !trace && !diagram {
                print!("{}", report.table());
            }
            ExitCode::SUCCESS
        }
        Command::Matrix { seeds, json, quiet } => {
            let show = !quiet && std::io::stderr().is_terminal();
            let started = std::time::Instant::now();
            let m = matrix::run(seeds.max(1), |done, total| {
                if show && started.elapsed().as_secs_f64() > 1.0 {
                    eprint!("\rmatrix: {done}/{total} cells");
                    let _ = std::io::stderr().flush();
                }
            });
            if show {
                eprint!("\r{:<40}\r", "");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&m).expect("reports serialize"));
            } else {
                print!("{}", m.grid());
            }
            if m.mismatches == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
