// Node 22+: the global WebSocket (typed by @types/node 22), passed explicitly.
import { Client } from "volley-js";

export const client = new Client("ws://127.0.0.1:8000/connection/websocket", { WebSocket: globalThis.WebSocket });
