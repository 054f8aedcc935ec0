// A browser app: the DOM's WebSocket and fetch (the defaults; passing them
// must type-check too). Bundled by esbuild for the browser as well.
import { Client, VERSION } from "volley-js";

export function start(url: string): Client {
  const client = new Client(url, { WebSocket: window.WebSocket });
  client.connect();
  return client;
}

export const sdkVersion: string = VERSION;
export const withDefault = (url: string): Client => new Client(url, { WebSocket });
export const fallbacksOnly = (url: string): Client =>
  new Client(url, { fetch: window.fetch, transports: ["sse", "long-poll"] });
