//! The `lab` and `lab-probe` subcommands, as `main.rs` calls them.

use std::net::SocketAddr;
use std::process::ExitCode;

use super::{probe, run, LabOptions};

/// `punchline-sim lab`: prints the table (or JSON with `json`); exit 0 when
/// everything agreed, 1 on a disagreement, 2 when the lab could not run.
pub fn lab(opts: &LabOptions, json: bool) -> ExitCode {
    match run(opts) {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
            } else {
                print!("{}", report.table());
            }
            if report.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// `punchline-sim lab-probe echo ADDR...` or
/// `lab-probe measure --echo A --echo B --echo C [--peer P] [--ttl N]`.
pub fn lab_probe(args: &[String]) -> ExitCode {
    let parse = |s: &String| s.parse::<SocketAddr>().map_err(|e| format!("{s}: {e}"));
    let result = match args.first().map(String::as_str) {
        Some("echo") => args[1..]
            .iter()
            .map(parse)
            .collect::<Result<Vec<_>, _>>()
            .and_then(|addrs| probe::echo(&addrs).map_err(|e| e.to_string())),
        Some("measure") => {
            let (mut echo, mut peer, mut ttl) = (Vec::new(), None, 3u8);
            let mut it = args[1..].iter();
            let mut bad = None;
            while let (Some(flag), Some(value)) = (it.next(), it.next()) {
                match flag.as_str() {
                    "--echo" => echo.extend(parse(value).ok()),
                    "--peer" => peer = parse(value).ok(),
                    "--ttl" => ttl = value.parse().unwrap_or(ttl),
                    other => bad = Some(format!("unknown flag {other}")),
                }
            }
            match (bad, <[SocketAddr; 3]>::try_from(echo)) {
                (None, Ok(echo)) => {
                    let m = probe::measure(echo, peer, ttl);
                    println!("{}", serde_json::to_string(&m).expect("measurements serialize"));
                    Ok(())
                }
                (Some(e), _) => Err(e),
                (None, Err(_)) => Err("measure needs exactly three --echo addresses".to_owned()),
            }
        }
        _ => {
            Err("usage: lab-probe echo ADDR... | lab-probe measure --echo A --echo B --echo C [--peer P] [--ttl N]"
                .into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab-probe: {e}");
            ExitCode::from(2)
        }
    }
}
