//! `punchline-sim`: run NAT scenarios and the preset matrix.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use punchline_sim::engine::Simulation;
use punchline_sim::matrix::{self, Stress};
use punchline_sim::report::mermaid;
use punchline_sim::scenario::Scenario;
use punchline_sim::{file_sweep, lab};

/// A run allocates and frees a datagram's payload per packet sent, and the
/// core a few small buffers per datagram handled. mimalloc keeps freed
/// blocks of each size on their own page's list and hands them back warm;
/// with a thousand hosts it runs the engine about 1.2× as fast as glibc's
/// allocator (`simtests/README.md`, Performance).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// No progress indicator (shown on a terminal for runs over a second).
        #[arg(long)]
        quiet: bool,
        /// Threads to run on: 1 or 2 (default: 2 for a world of 64 peers or
        /// more on a machine with two cores). Every output is the same.
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
        threads: Option<u8>,
    },
    /// Run every ordered pair of NAT presets over several seeds and compare
    /// with the oracle. Exits 1 when any cell disagrees or any run failed.
    Matrix {
        /// Seeds per cell.
        #[arg(long, default_value_t = 10)]
        seeds: u32,
        /// Sweep one family of trouble over every pair: early (connect at
        /// 100 ms), reboot (a NAT reboot mid-session), loss (15 % on both
        /// links), lan (both peers behind one NAT), roam (the connecting
        /// peer changes networks), outage (the server is down for 30 s),
        /// or all of them, one after another.
        #[arg(long, value_name = "NAME", value_parser = ["early", "reboot", "loss", "lan", "roam", "outage", "all"])]
        stress: Option<String>,
        /// Print the JSON report.
        #[arg(long)]
        json: bool,
        /// No progress indicator (shown on a terminal for runs over a second).
        #[arg(long)]
        quiet: bool,
    },
    /// Measure file transfer against issue 22's simulator targets
    /// (throughput, loss, fairness, migration, interruption) over several
    /// seeds; prints each figure with its bound. Exits 1 when any target is
    /// not met.
    Files {
        /// Seeds per target.
        #[arg(long, default_value_t = 5)]
        seeds: u32,
        /// Move less data per run (the same scenarios and bounds).
        #[arg(long)]
        quick: bool,
        /// Print the JSON report.
        #[arg(long)]
        json: bool,
        /// No progress indicator (shown on a terminal for runs over a second).
        #[arg(long)]
        quiet: bool,
    },
    /// Run the real binaries behind real Linux NATs (network namespaces,
    /// nftables, conntrack; needs root) and compare every pair, a NAT reboot,
    /// a same-LAN pair, UDP blocked mid-session and a 64 MiB file transfer
    /// with the simulator.
    Lab {
        /// Print the JSON report.
        #[arg(long)]
        json: bool,
        /// Leave the namespaces for inspection (prints how to remove them).
        #[arg(long)]
        keep: bool,
        /// punchline-server (default: next to this executable).
        #[arg(long)]
        server_bin: Option<PathBuf>,
        /// punchline (default: next to this executable).
        #[arg(long)]
        client_bin: Option<PathBuf>,
        /// Runtime for both binaries (mio or smol).
        #[arg(long)]
        runtime: Option<String>,
        /// Only measure the kernel NATs (no Punchline binaries needed).
        #[arg(long)]
        nat_only: bool,
        /// Skip the ordered pairs: the NAT measurements and the other checks.
        #[arg(long, conflicts_with = "nat_only")]
        no_pairs: bool,
        /// Only these parts of the lab (comma-separated or repeated), e.g.
        /// `--only files` or `--only nats,pairs`.
        #[arg(long, value_enum, value_delimiter = ',', conflicts_with_all = ["nat_only", "no_pairs"])]
        only: Vec<lab::Check>,
        /// Simulator seeds per pair.
        #[arg(long, default_value_t = 5)]
        sim_seeds: u32,
        /// Progress on stderr.
        #[arg(long, short)]
        verbose: bool,
    },
    /// The lab's UDP probe, run inside its namespaces.
    #[command(hide = true)]
    LabProbe {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { file, seed, json, trace, mermaid: diagram, quiet, threads } => {
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
            if let Some(threads) = threads {
                sim.set_threads(usize::from(threads));
            }
            let mut progress = Progress::new(quiet);
            let (report, lines, arrows) = sim.run_with_progress(|now, end| {
                progress.show(|| format!("run: {:.1} s of {:.1} s simulated", now.as_secs_f64(), end.as_secs_f64()))
            });
            progress.clear();
            let written = write_stdout(|out| {
                if trace {
                    for line in &lines {
                        writeln!(out, "{line}")?;
                    }
                }
                if diagram {
                    write!(out, "{}", mermaid(&arrows, &participants))?;
                }
                if json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&report).expect("reports serialize"))?;
                } else if !trace && !diagram {
                    write!(out, "{}", report.table())?;
                }
                Ok(())
            });
            written.map_or_else(|code| code, |()| ExitCode::SUCCESS)
        }
        Command::Lab { json, keep, server_bin, client_bin, runtime, nat_only, no_pairs, only, sim_seeds, verbose } => {
            let opts =
                lab::LabOptions { keep, server_bin, client_bin, runtime, nat_only, no_pairs, only, sim_seeds, verbose };
            lab::cli::lab(&opts, json)
        }
        Command::LabProbe { args } => lab::cli::lab_probe(&args),
        Command::Files { seeds, quick, json, quiet } => {
            let mut progress = Progress::new(quiet);
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(matrix::MAX_THREADS));
            let options = file_sweep::Options { seeds, quick, threads };
            let sweep = file_sweep::run(options, |done, total| progress.show(|| format!("files: {done}/{total} runs")));
            progress.clear();
            let written = write_stdout(|out| {
                if json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&sweep).expect("reports serialize"))
                } else {
                    write!(out, "{}", sweep.table())
                }
            });
            match written {
                Err(code) if code != ExitCode::SUCCESS => code,
                _ if sweep.unmet == 0 => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            }
        }
        Command::Matrix { seeds, stress, json, quiet } => {
            // The value parser admits only the families and `all`.
            let families: Vec<Option<Stress>> = match stress.as_deref() {
                None => vec![None],
                Some("all") => Stress::ALL.into_iter().map(Some).collect(),
                Some(name) => vec![Some(name.parse().expect("clap checked the name"))],
            };
            let mut progress = Progress::new(quiet);
            let mut matrices = Vec::new();
            for family in families {
                let label = family.map_or("matrix".to_string(), |f| format!("matrix --stress {f}"));
                let m = matrix::run_stress(family, seeds.max(1), |done, total| {
                    progress.show(|| format!("{label}: {done}/{total} cells"))
                });
                matrices.push(m);
            }
            progress.clear();
            let written = write_stdout(|out| {
                if json && stress.as_deref() == Some("all") {
                    writeln!(out, "{}", serde_json::to_string_pretty(&matrices).expect("reports serialize"))
                } else if json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&matrices[0]).expect("reports serialize"))
                } else {
                    let grids: Vec<String> = matrices.iter().map(matrix::Matrix::grid).collect();
                    write!(out, "{}", grids.join("\n"))
                }
            });
            match written {
                Err(code) if code != ExitCode::SUCCESS => code,
                _ if matrices.iter().all(|m| m.mismatches == 0) => ExitCode::SUCCESS,
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// Writes the output to stdout, buffered. A reader that went away
/// (`punchline-sim run … --trace | head`) ends the output quietly, as Unix
/// tools do: `Err(ExitCode::SUCCESS)`. Any other write error is reported
/// on stderr: `Err(ExitCode::FAILURE)`.
fn write_stdout(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<(), ExitCode> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: cannot write the output: {e}");
            Err(ExitCode::FAILURE)
        }
    }
}

/// A one-line progress indicator on stderr: only on a terminal, not with
/// `--quiet`, and only once the work has taken more than a second.
struct Progress {
    enabled: bool,
    started: std::time::Instant,
    shown: bool,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress {
            enabled: !quiet && std::io::stderr().is_terminal(),
            started: std::time::Instant::now(),
            shown: false,
        }
    }

    /// Rewrites the line with `text()`, when enabled and past the first second.
    fn show(&mut self, text: impl FnOnce() -> String) {
        if self.enabled && self.started.elapsed().as_secs_f64() > 1.0 {
            eprint!("\r{:<40}", text());
            let _ = std::io::stderr().flush();
            self.shown = true;
        }
    }

    /// Erases the line, if one was shown.
    fn clear(&mut self) {
        if self.shown {
            eprint!("\r{:<40}\r", "");
            self.shown = false;
        }
    }
}
