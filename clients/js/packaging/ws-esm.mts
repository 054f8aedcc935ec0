// An ES module in Node passing the `ws` package's WebSocket, without a cast.
import { Client, type ConnectedEvent } from "volley-js";
import WebSocket from "ws";

const client = new Client("ws://127.0.0.1:8000/connection/websocket", { WebSocket });
client.on("connected", (event: ConnectedEvent) => console.log(event.client));

// The option is typed, not `any`: something that is not a WebSocket is refused.
// @ts-expect-error Date is not a WebSocket constructor
new Client("ws://127.0.0.1:8000/connection/websocket", { WebSocket: Date });

export { client };
