//! `volley`: the command-line front end. Argument parsing only; the work is
//! done by the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod echo;
mod testee;

/// Volley: WebSocket tools.
#[derive(Debug, Parser)]
#[command(name = "volley", version, about, long_about = None)]
struct Cli {
    /// Log filter (e.g. `info`, `volley=debug`); overrides RUST_LOG.
    #[arg(long, global = true, env = "VOLLEY_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a WebSocket echo server (the Autobahn server testee): every text
    /// and binary message is sent back unchanged.
    Echo(echo::EchoArgs),
    /// Run the Autobahn|Testsuite client testee against a `wstest -m
    /// fuzzingserver` at URL: every case, then the report update.
    Testee(testee::TesteeArgs),
    /// Load-test a WebSocket echo server: throughput, latency, or memory per
    /// idle connection. Every echoed byte is checked.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("volley: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Echo(args) => echo::run(args).await,
            Command::Testee(args) => testee::run(args).await,
            Command::Bench(args) => bench::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("volley: {e}");
            ExitCode::FAILURE
        }
    }
}
