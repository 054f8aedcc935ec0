// A CommonJS module (the package's `require` types) passing `ws`'s WebSocket.
import volley = require("volley-js");
import WebSocket = require("ws");

const client = new volley.Client("ws://127.0.0.1:8000/connection/websocket", { WebSocket });
const sub: volley.Subscription = client.subscribe("chat:lobby");
sub.on("publication", (p: volley.PublicationEvent) => console.log(p.offset, p.data));

export = client;
