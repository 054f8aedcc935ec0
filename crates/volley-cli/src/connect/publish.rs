//! `volley publish URL CHANNEL DATA`: one publication through the hub's HTTP
//! API (docs/http-api.md), with the API key.

use clap::Args;
use serde_json::{Value, json};

use super::exit::Ending;
use crate::http_api::HttpApi;

/// Arguments of `volley publish`.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// The hub: http://HOST:PORT (ws:// is accepted; the path is ignored).
    /// Example: http://127.0.0.1:8000
    pub(crate) url: String,
    /// The channel. Example: chat:lobby
    pub(crate) channel: String,
    /// The data, as JSON (with --string: any text, sent as a JSON string).
    /// Example: '{"text":"deploy finished"}'
    pub(crate) data: String,
    /// The hub's API key.
    /// Example: --api-key "$VOLLEY_API_KEY"
    #[arg(long, env = "VOLLEY_API_KEY", hide_env_values = true)]
    pub(crate) api_key: String,
    /// Sends DATA as a JSON string instead of parsing it.
    /// Example: --string 'hello'
    #[arg(long)]
    pub(crate) string: bool,
}

/// `host:port` of an http:// or ws:// URL.
pub(crate) fn authority(url: &str) -> Result<String, String> {
    let target = volley::Target::parse(url).map_err(|e| e.to_string())?;
    if target.tls {
        return Err(format!(
            "{url}: the HTTP API client speaks plain http:// only"
        ));
    }
    Ok(if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    })
}

/// Runs `volley publish`: prints the result (`{"epoch","offset"}`) on
/// stdout; exit 0 on success, 1 otherwise.
pub(crate) async fn run(args: PublishArgs) -> Ending {
    let data: Value = if args.string {
        Value::String(args.data.clone())
    } else {
        match serde_json::from_str(&args.data) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("volley: DATA is not JSON ({e}); use --string to send text");
                return Ending::Failure;
            }
        }
    };
    let addr = match authority(&args.url) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("volley: {e}");
            return Ending::Failure;
        }
    };
    let body = json!({"channel": args.channel, "data": data}).to_string();
    match HttpApi::new(&addr, &args.api_key)
        .post("publish", &body)
        .await
    {
        Ok((200, body)) => {
            let result = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("result").cloned())
                .unwrap_or(Value::Null);
            println!("{result}");
            Ending::Normal
        }
        Ok((status, body)) => {
            eprintln!(
                "volley: publish failed: HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
            Ending::Failure
        }
        Err(e) => {
            eprintln!("volley: publish failed: {e}");
            Ending::ConnectFailed
        }
    }
}
