//! `volley`: the command-line front end. Argument parsing only; the work is
//! done by the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc: after connections end, glibc kept
/// each thread arena's peak (VmRSS after 1,000 reset connections stayed at
/// the peak, cycle after cycle), while jemalloc's background thread returns
/// freed pages to the OS within its decay time, even when the server is idle
/// (crates/volley-cli/tests/memory.rs).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod bench;
mod connect;
mod echo;
mod http_api;
mod listen;
mod serve;
mod testee;

/// Volley: WebSocket tools.
#[derive(Debug, Parser)]
#[command(name = "volley", version, about, long_about = None)]
struct Cli {
    /// Log filter; overrides RUST_LOG. Example: --log volley=debug
    #[arg(long, global = true, env = "VOLLEY_LOG", default_value = "info")]
    log: String,
    /// Log format on stderr: `human` or `json` (one object per line).
    /// Example: --log-format json
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
    /// Connect to a WebSocket server: interactive on a terminal, one message
    /// per line in a pipe; HTTP and SOCKS5 proxies, TLS options,
    /// --reconnect, --record. Exit codes tell how the connection ended.
    Connect(connect::ConnectArgs),
    /// Replay the client messages of a `volley connect --record` file with
    /// their timing and report where the server's replies differ (exit 1).
    Replay(connect::replay::ReplayArgs),
    /// Subscribe to hub channels (volley.v1) and print publications as JSON
    /// lines; reconnects and recovers like the SDK.
    Subscribe(connect::subscribe::SubscribeArgs),
    /// Publish to a hub channel through the HTTP API, with the API key.
    Publish(connect::publish::PublishArgs),
}

/// Whether log lines carry ANSI colours: only on a terminal, and never when
/// `NO_COLOR` is set to a non-empty value (<https://no-color.org>).
fn colour(stderr_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// The runtime of a server: with one thread (asked for, or the only CPU this
/// process may run on), a current-thread runtime, so the accept loop and the
/// connections never wait for each other across threads.
fn server_runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ansi = colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR"),
    );
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let runtime = match &cli.command {
        // The hub starts its other connection threads itself
        // (`Server::with_threads`), each a current-thread runtime like this.
        Command::Serve(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Command::Echo(args) => server_runtime(args.threads),
        _ => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("volley: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let command = match cli.command {
        // The client commands end with an exit code of their own. stdin may
        // still be read by a blocking thread: do not wait for it.
        Command::Connect(args) => return client_exit(runtime, connect::run(args)),
        Command::Replay(args) => return client_exit(runtime, connect::replay::run(args)),
        Command::Subscribe(args) => return client_exit(runtime, connect::subscribe::run(args)),
        Command::Publish(args) => return client_exit(runtime, connect::publish::run(args)),
        command => command,
    };
    let result = runtime.block_on(async {
        match command {
            // A server's accept loop runs on a worker like its connections
            // (block_on would keep it on this thread, apart from them).
            Command::Serve(args) => on_worker(async { Ok(serve::run(args).await?) }).await,
            Command::Echo(args) => on_worker(echo::run(args)).await,
            Command::Testee(args) => testee::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            // Returned above.
            Command::Connect(_)
            | Command::Replay(_)
            | Command::Subscribe(_)
            | Command::Publish(_) => Ok(()),
        }
    });
    // Connections still open (a second Ctrl-C during a drain) are dropped
    // with the runtime, at once.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("volley: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a client command and exits with its code.
fn client_exit(
    runtime: tokio::runtime::Runtime,
    command: impl std::future::Future<Output = connect::exit::Ending>,
) -> ExitCode {
    let ending = runtime.block_on(command);
    runtime.shutdown_background();
    ending.into()
}

/// A server's error.
type ServerError = Box<dyn std::error::Error + Send + Sync>;

/// Runs a server's future as a task of the runtime.
async fn on_worker(
    run: impl std::future::Future<Output = Result<(), ServerError>> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    match tokio::spawn(run).await {
        Ok(result) => result.map_err(|e| -> Box<dyn std::error::Error> { e }),
        Err(e) => Err(format!("the server task failed: {e}").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None));
        assert!(!colour(false, Some("1".into())));
    }
}
