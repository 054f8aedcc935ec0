// A browser app: the DOM's WebSocket (the default; passing it must type-check
// too). Bundled by esbuild for the browser as well.
import { Client, VERSION } from "volley-js";

export function start(url: string): Client {
  const client = new Client(url, { WebSocket: window.WebSocket });
  client.connect();
  return client;
}

export const sdkVersion: string = VERSION;
export const withDefault = (url: string): Client => new Client(url, { WebSocket });
