'use strict';
// The runtime check that consumer.mjs, consumer.cjs and the esbuild bundle of
// consumer.cjs share: each loads volley-js its own way and hands it here.
// Without a URL it constructs a client (no network). With the WebSocket URL of
// a running `volley serve` whose namespace `pack` allows anonymous publishers,
// it connects, subscribes, publishes, receives its own publication, reads it
// back from history and disconnects. Prints each step, then a line with "ok";
// exit status 1 on failure.

// The driver bounds each run in time; the steps are printed as they pass, so
// that a run stopped there shows where it waited.

/** Resolves with the next event `name` of `emitter`. */
function next(emitter, name) {
  return new Promise((resolve) => {
    const off = emitter.on(name, (event) => {
      off();
      resolve(event);
    });
  });
}

async function scenario(volley, WebSocket, url, label) {
  const { Client, Subscription, VolleyError, VERSION } = volley;
  for (const [name, value] of Object.entries({ Client, Subscription, VolleyError })) {
    if (typeof value !== 'function') throw new Error(`volley-js exports no ${name}`);
  }
  if (!url) {
    const client = new Client('ws://127.0.0.1:9/connection/websocket', { WebSocket });
    if (client.state !== 'disconnected') throw new Error(`new client in state ${client.state}`);
    return `constructed a client (volley-js ${VERSION}); no hub (VOLLEY_BIN unset)`;
  }
  const client = new Client(url, { WebSocket });
  try {
    const sub = client.newSubscription(`pack:${label}`);
    const subscribed = next(sub, 'subscribed');
    sub.subscribe();
    client.connect();
    await subscribed;
    const id = client.client;
    console.log(`${label}: connected as ${id}, subscribed to ${sub.channel}`);
    const own = next(sub, 'publication');
    const { offset } = await sub.publish({ from: label });
    console.log(`${label}: published, offset ${offset}`);
    const publication = await own;
    if (publication.offset !== offset || publication.data?.from !== label) {
      throw new Error(`publication ${JSON.stringify(publication)}, publish offset ${offset}`);
    }
    const history = await sub.history({ limit: 10 });
    if (!history.publications.some((p) => p.offset === offset)) throw new Error(`history ${JSON.stringify(history)}`);
    return `volley-js ${VERSION}: client ${id} subscribed, published offset ${offset}, received it and read it from history`;
  } finally {
    client.disconnect();
  }
}

/** Runs the scenario with `process.argv[2]` as the URL and reports the outcome. */
function main(volley, WebSocket, label) {
  scenario(volley, WebSocket, process.argv[2], label).then(
    (line) => console.log(`${label}: ok: ${line}`),
    (error) => {
      console.error(`${label}: ${error.stack || error}`);
      process.exitCode = 1;
    },
  );
}

module.exports = { main };
