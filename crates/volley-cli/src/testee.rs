//! `volley testee`: the Autobahn|Testsuite client testee.

use clap::Args;
use volley::{ClientBuilder, DeflateConfig, WebSocketConfig};

/// Arguments of `volley testee`.
#[derive(Debug, Args)]
pub(crate) struct TesteeArgs {
    /// Base URL of `wstest -m fuzzingserver`.
    #[arg(long, default_value = "ws://127.0.0.1:9001")]
    url: String,
    /// Agent name the reports are filed under.
    #[arg(long, default_value = "volley")]
    agent: String,
    /// Turn permessage-deflate off.
    #[arg(long)]
    no_compression: bool,
}

pub(crate) async fn run(args: TesteeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let deflate = (!args.no_compression).then(DeflateConfig::default);
    let protocol = volley::Config::builder().deflate(deflate).build()?;
    let config = WebSocketConfig::builder().protocol(protocol).build()?;
    let base = args.url.trim_end_matches('/');

    let (mut ws, _) = ClientBuilder::new(format!("{base}/getCaseCount"))
        .config(config.clone())
        .connect()
        .await?;
    let count: u32 = match ws.recv().await {
        Some(Ok(m)) => m.as_text().unwrap_or_default().trim().parse()?,
        Some(Err(e)) => return Err(e.into()),
        None => return Err("fuzzingserver closed without a case count".into()),
    };
    while ws.recv().await.is_some() {}
    println!("running {count} cases");

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={}", args.agent);
        match ClientBuilder::new(url)
            .config(config.clone())
            .connect()
            .await
        {
            Ok((ws, _)) => {
                if let Err(e) = crate::echo::echo(ws).await {
                    tracing::debug!(case, error = %e, "case ended with an error");
                }
            }
            Err(e) => tracing::warn!(case, error = %e, "cannot connect"),
        }
    }

    let url = format!("{base}/updateReports?agent={}", args.agent);
    let (mut ws, _) = ClientBuilder::new(url).config(config).connect().await?;
    while ws.recv().await.is_some() {}
    println!("reports updated");
    Ok(())
}
