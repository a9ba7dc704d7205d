//! The `pedvision` binary: parses the command line, sets up logging, runs the
//! subcommand and turns its outcome into an exit code (0 success, 1 failure, 2 bad
//! usage). Errors print as one line: `error: <what failed>: <why>`.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    let args = match cli::Cli::from_arg_matches(&matches) {
        Ok(args) => args,
        Err(e) => e.exit(),
    };
    init_logging(&args.log_level, args.log_format);
    quiet_panics();
    let result = match args.command {
        cli::Command::Run(a) => {
            let run_matches = matches
                .subcommand_matches("run")
                .expect("the run subcommand matched");
            cli::run::execute(*a, run_matches)
        }
        cli::Command::Bench(a) => cli::bench::execute(a),
        cli::Command::Doctor(a) => {
            let doctor_matches = matches
                .subcommand_matches("doctor")
                .expect("the doctor subcommand matched");
            cli::doctor::execute(a, doctor_matches)
        }
        cli::Command::Retrain(a) => cli::retrain::execute(a),
        cli::Command::Eval(a) => cli::eval::execute(a),
        cli::Command::Synth(a) => cli::synth::execute(a),
        cli::Command::Track(a) => cli::track::execute(a),
        cli::Command::Worker(a) => {
            let worker_matches = matches
                .subcommand_matches("worker")
                .expect("the worker subcommand matched");
            cli::worker::execute(*a, worker_matches)
        }
        cli::Command::Fleet(a) => cli::fleet::execute(a),
        cli::Command::Manuals(a) => cli::manuals::execute(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// A panic becomes one log line (thread, place, message) instead of a dump; the
/// pipeline turns a stage's panic into the run's `error:` line. `RUST_BACKTRACE`
/// brings the standard report back for debugging.
fn quiet_panics() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let message = pedvision::pipeline::panic_message(info.payload());
        tracing::error!(
            thread = thread.name().unwrap_or("?"),
            at = %info.location().map_or(String::new(), |l| l.to_string()),
            "panic: {message}"
        );
    }));
}

/// The error and its causes on one line, skipping causes whose text the line
/// already holds (typed errors often quote their source).
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// Logs go to stderr. A bare level applies to pedvision; ONNX Runtime's own log
/// stays at `warn` unless the filter names it.
fn init_logging(level: &str, format: cli::LogFormat) {
    let spec = if level.contains('=') || level.contains(',') {
        level.to_string()
    } else {
        format!("warn,pedvision={level}")
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&spec))
        .unwrap_or_else(|_| EnvFilter::new("warn,pedvision=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match format {
        cli::LogFormat::Json => builder.json().flatten_event(true).init(),
        cli::LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}
