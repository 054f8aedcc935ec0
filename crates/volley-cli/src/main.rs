//! `volley`: the command-line front end. Argument parsing only; the work is
//! done by the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod echo;
mod http_api;
mod serve;
mod testee;

/// Volley: WebSocket tools.
#[derive(Debug, Parser)]
#[command(name = "volley", version, about, long_about = None)]
struct Cli {
    /// Log filter (e.g. `info`, `volley=debug`); overrides RUST_LOG.
    #[arg(long, global = true, env = "VOLLEY_LOG", default_value = "info")]
    log: String,
    /// Log format on stderr: `human` or `json` (one object per line).
    #[arg(
        long,
        global = true,
        env = "VOLLEY_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the realtime hub: channels, presence, history and recovery, JWT
    /// auth, HTTP API, metrics. Without --config it runs the demo.
    Serve(serve::ServeArgs),
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
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command {
        if let Some(n) = args.threads {
            builder.worker_threads(n.max(1));
        }
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("volley: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args).await.map_err(Into::into),
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
