//! `overlay`: the operator's command line. Parses arguments and maps outcomes to
//! exit codes: 0 ok, 64 bad usage or bad configuration, 1 runtime failure, 2
//! (`overlay status` only) the fleet is degraded: a relay away or a link not up.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

mod api_cmd;
mod cli;
mod failure;
mod lab;
mod pki_cmd;
mod plan_cmd;
mod table;
mod topology_cmd;

use cli::{Cli, Command, PkiCommand, TopologyCommand};
use failure::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; everything else is bad usage.
            let code = if e.use_stderr() { Failure::USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // RUST_LOG=info shows what the relays and the controller log (e.g. in the lab).
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    match run(cli) {
        Ok((output, code)) => match write_stdout(&output) {
            Ok(()) => ExitCode::from(code),
            Err(failed) => failed,
        },
        Err(f) => {
            eprintln!("{}", f.message.trim_end());
            ExitCode::from(f.code)
        }
    }
}

/// Prints a command's output; a reader that went away (`| head`) is not an error.
fn write_stdout(output: &str) -> Result<(), ExitCode> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => {
            eprintln!("cannot write to stdout: {e}");
            Err(ExitCode::from(Failure::RUNTIME))
        }
    }
}

/// Runs a command: what it prints and its exit code (0 unless it says otherwise).
fn run(cli: Cli) -> Result<(String, u8), Failure> {
    let output = match cli.command {
        Command::Topology { command } => match command {
            TopologyCommand::Check { file } => topology_cmd::check(file.as_deref()),
            TopologyCommand::Show { file } => topology_cmd::show(file.as_deref()),
            TopologyCommand::Path {
                first,
                second,
                third,
                k,
            } => topology_cmd::path(&first, &second, third.as_deref(), k),
        },
        Command::Pki { command } => match command {
            PkiCommand::Init { out, force } => pki_cmd::init(&out, force),
            PkiCommand::Issue {
                ca,
                node,
                out,
                force,
            } => pki_cmd::issue(&ca, &node, &out, force),
        },
        Command::Status { api } => {
            return api_cmd::status(&api).map(|s| {
                let code = s.exit_code();
                (s.text, code)
            })
        }
        Command::Links { api } => api_cmd::links(&api),
        Command::Routes { from, to, api } => api_cmd::routes(&api, &from, &to),
        Command::Trace { service, api } => api_cmd::trace(&api, &service),
        Command::Plan {
            topology,
            classes,
            demand,
            cut,
            json,
        } => plan_cmd::run(&plan_cmd::PlanOptions {
            topology: topology.as_deref(),
            classes,
            demand: demand.as_deref(),
            cut: cut.as_deref(),
            json,
        }),
        Command::Lab {
            topology,
            duration,
            classes,
            loss,
            seed,
            scenario,
            api,
            capacity_scale,
            undersea_only,
            no_placement,
            tolerant_probes,
        } => {
            if !(0.0..=1.0).contains(&loss) {
                return Err(Failure::usage(format!(
                    "--loss {loss}: give a fraction from 0.0 to 1.0"
                )));
            }
            let scenario = match scenario.as_deref() {
                None => lab::Scenario::Default,
                Some("none") => lab::Scenario::None,
                Some(path) => lab::Scenario::File(path.into()),
            };
            lab::run(&lab::LabOptions {
                topology,
                duration,
                classes,
                loss,
                seed,
                scenario,
                // Bound as the resolver orders it; `status --api` tries each.
                api: api.addrs[0],
                capacity_scale,
                undersea_only,
                placement: !no_placement,
                tolerant_probes,
            })
        }
    }?;
    Ok((output, 0))
}
