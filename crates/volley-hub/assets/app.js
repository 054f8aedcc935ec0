// The demo app served at / by `volley serve`: a chat room (chat:lobby, with
// presence and the recent history on join) beside a live ticker chart
// (ticker:demo). Plain JavaScript over the SDK at /volley.js; no build step.
// User data is only ever put into the page as text (textContent), never as HTML.
import { Client } from "/volley.js";

const CHAT = "chat:lobby";
const TICKER = "ticker:demo";
const HISTORY_ON_JOIN = 50;
const CHART_POINTS = 120; // 60 s at one point per 500 ms

const $ = (id) => document.getElementById(id);
const el = (tag, className, text) => {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
};

let name = "";
let client = null;
let chat = null;

// ?transports=sse,long-poll restricts (and orders) the SDK's transports, to try
// the fallbacks; by default it tries WebSocket, then SSE, then long-polling.
const page = new URLSearchParams(window.location.search);
const transports = page.get("transports")?.split(",").map((t) => t.trim()).filter(Boolean);
const clientOptions = transports && transports.length > 0 ? { transports } : {};

// ---- name -------------------------------------------------------------------------------

function defaultName() {
  const saved = safeStorage("get", "volley-demo-name");
  if (saved) return saved;
  return `guest-${String(Math.floor(Math.random() * 1000)).padStart(3, "0")}`;
}

function safeStorage(op, key, value) {
  try {
    if (op === "get") return window.localStorage.getItem(key);
    window.localStorage.setItem(key, value);
  } catch {
    // storage disabled: the name is simply not remembered
  }
  return null;
}

$("name-input").value = defaultName();
$("name-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("name-input").value.trim().slice(0, 32);
  if (!value) return;
  join(value);
});

// ---- connection -------------------------------------------------------------------------

async function getToken() {
  const response = await fetch(`/demo/token?name=${encodeURIComponent(name)}`, { cache: "no-store" });
  if (!response.ok) throw new Error(`token request failed: HTTP ${response.status}`);
  const body = await response.json();
  return body.token;
}

function join(chosen) {
  if (client) return;
  name = chosen;
  safeStorage("set", "volley-demo-name", name);
  $("name-form").hidden = true;
  $("room").hidden = false;
  $("chat-title").firstChild.textContent = `Chat as ${name} `;

  client = new Client(undefined, { ...clientOptions, getToken });
  client.on("state", ({ state }) => setStatus(state));
  client.on("connecting", ({ code, reason, delayMs }) => {
    if (code === 0) return setStatus("connecting", "connecting…");
    const why = reason ? `${code} ${reason}` : `${code}`;
    const when = delayMs ? ` in ${(delayMs / 1000).toFixed(1)} s` : "";
    setStatus("connecting", `reconnecting${when} (closed: ${why})`);
  });
  client.on("connected", ({ client: id, transport }) => {
    setStatus("connected", `connected as ${name} (${transport})`);
    document.body.dataset.clientId = id;
    document.body.dataset.transport = transport;
    $("client-id").textContent = id;
  });
  client.on("disconnected", ({ code, reason, reconnect }) => {
    delete document.body.dataset.clientId;
    $("client-id").textContent = "–";
    if (!reconnect) setStatus("disconnected", `disconnected (${code}${reason ? ` ${reason}` : ""})`);
  });

  startChat();
  client.connect();
  $("chat-input").focus();
}

function setStatus(state, text) {
  const status = $("status");
  status.dataset.state = state;
  if (text) status.textContent = text;
  else if (state === "connecting") status.textContent = "connecting…";
  else if (state === "disconnected") status.textContent = "not connected";
}

// ---- chat -------------------------------------------------------------------------------

// Messages by offset: the page renders each offset once, in offset order.
const rendered = new Map();
let loading = null; // while the history loads: publications that arrive meanwhile
let recovering = false; // while the SDK delivers the publications recovered on a resubscribe

function startChat() {
  chat = client.newSubscription(CHAT, { presence: true });
  chat.on("subscribed", ({ recovered, wasRecovering }) => {
    $("send-button").disabled = false;
    // How the last (re)subscription went, for tests and the curious: fresh, recovered or reloaded.
    document.body.dataset.chat = !wasRecovering ? "fresh" : recovered ? "recovered" : "reloaded";
    document.body.dataset.chatSubscriptions = String(Number(document.body.dataset.chatSubscriptions || 0) + 1);
    // The SDK delivers recovered publications right after this event, in the same task: count them.
    recovering = recovered;
    if (recovered) queueMicrotask(() => (recovering = false));
    if (wasRecovering && recovered) {
      notice("");
      return; // everything missed follows as publications
    }
    if (wasRecovering) {
      // Publications may have been missed (and a new epoch restarts offsets): start over (§10.4).
      notice("Some messages could not be recovered; the recent history was reloaded.");
      rendered.clear();
      $("messages").replaceChildren();
    }
    loadHistory();
  });
  chat.on("subscribing", () => {
    $("send-button").disabled = true;
  });
  chat.on("unsubscribed", ({ code, reason }) => {
    $("send-button").disabled = true;
    notice(`Left the chat (${code} ${reason}).`);
  });
  chat.on("publication", (pub) => {
    if (recovering) document.body.dataset.chatRecovered = String(Number(document.body.dataset.chatRecovered || 0) + 1);
    if (loading) loading.push(pub);
    else addMessage(pub);
  });
  chat.on("presence", ({ clients }) => renderPresence(clients));
  chat.subscribe();

  $("chat-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const input = $("chat-input");
    const text = input.value.trim();
    if (!text || !chat) return;
    const button = $("send-button");
    button.disabled = true;
    try {
      await chat.publish({ name, text });
      input.value = "";
      notice("");
    } catch (error) {
      notice(`Not sent: ${error.message}`);
    } finally {
      button.disabled = chat.state !== "subscribed";
      input.focus();
    }
  });
}

// Loads the recent history, keeping the publications that arrive meanwhile
// and applying them afterwards (docs/protocol.md §10.4); offsets dedupe the overlap.
async function loadHistory() {
  const buffered = [];
  loading = buffered;
  try {
    const history = await chat.history({ limit: HISTORY_ON_JOIN, reverse: true });
    for (const pub of history.publications.slice().reverse()) addMessage(pub);
  } catch (error) {
    notice(`Could not load the history: ${error.message}`);
  } finally {
    if (loading === buffered) loading = null;
    for (const pub of buffered) addMessage(pub);
  }
}

function addMessage(pub) {
  const offset = typeof pub.offset === "number" ? pub.offset : undefined;
  if (offset !== undefined && rendered.has(offset)) return;
  const data = pub.data && typeof pub.data === "object" ? pub.data : { text: pub.data };
  const author = typeof data.name === "string" ? data.name : (pub.info && pub.info.conn_info && pub.info.conn_info.name) || "anonymous";
  const text = typeof data.text === "string" ? data.text : JSON.stringify(pub.data);

  const item = el("li", "message");
  item.dataset.testid = "message";
  if (offset !== undefined) item.dataset.offset = String(offset);
  if (pub.info && client && (pub.info.client === client.client || (client.user && pub.info.user === client.user))) {
    item.classList.add("mine");
  }
  item.append(el("span", "author", author), el("span", "text", text));

  const list = $("messages");
  const stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 8;
  let before = null;
  if (offset !== undefined) {
    rendered.set(offset, item);
    for (const [other, node] of rendered) {
      if (other > offset && (before === null || other < Number(before.dataset.offset))) before = node;
    }
  }
  list.insertBefore(item, before);
  if (stick) list.scrollTop = list.scrollHeight;
}

function renderPresence(clients) {
  const list = $("presence");
  list.replaceChildren();
  const sorted = clients.slice().sort((a, b) => displayName(a).localeCompare(displayName(b)));
  for (const info of sorted) {
    const item = el("li", null, displayName(info));
    item.dataset.client = info.client;
    if (client && info.client === client.client) {
      item.classList.add("me");
      item.append(el("span", "muted", " (you)"));
    }
    list.append(item);
  }
  $("presence-count").textContent = String(clients.length);
}

function displayName(info) {
  const conn = info.conn_info;
  return conn && typeof conn.name === "string" ? conn.name : info.user || "anonymous";
}

function notice(text) {
  const node = $("chat-notice");
  node.textContent = text;
  node.hidden = !text;
}

// ---- ticker -----------------------------------------------------------------------------

const points = []; // [{t, price}], oldest first

// The ticker runs from the first paint, before anyone joins the chat: on its
// own anonymous connection (the demo's ticker namespace allows anonymous
// subscribers), so joining, leaving or reconnecting the chat never blanks it.
function startTicker() {
  const feed = new Client(undefined, clientOptions);
  const ticker = feed.newSubscription(TICKER);
  let loaded = false;
  ticker.on("subscribed", async ({ recovered, wasRecovering }) => {
    if (loaded && wasRecovering && recovered) return;
    loaded = true;
    try {
      const history = await ticker.history({ limit: CHART_POINTS, reverse: true });
      points.length = 0;
      for (const pub of history.publications.slice().reverse()) addPoint(pub.data, false);
      drawChart();
    } catch {
      // the chart fills from the live feed
    }
  });
  ticker.on("publication", (pub) => {
    addPoint(pub.data, true);
  });
  ticker.subscribe();
  feed.connect();
}

function addPoint(data, draw) {
  if (!data || typeof data.price !== "number" || typeof data.t !== "number") return;
  const last = points[points.length - 1];
  if (last && data.t <= last.t) return;
  points.push({ t: data.t, price: data.price });
  if (points.length > CHART_POINTS) points.splice(0, points.length - CHART_POINTS);
  if (draw) drawChart();
}

function drawChart() {
  const chart = $("ticker-chart");
  chart.dataset.count = String(points.length);
  if (points.length === 0) return;
  const prices = points.map((p) => p.price);
  const min = Math.min(...prices);
  const max = Math.max(...prices);
  const span = max - min || 1;
  const step = 300 / Math.max(points.length - 1, 1);
  const coords = points.map((p, i) => `${(i * step).toFixed(1)},${(114 - ((p.price - min) / span) * 108).toFixed(1)}`);
  $("ticker-line").setAttribute("points", coords.join(" "));
  const last = points[points.length - 1];
  chart.dataset.lastT = String(last.t);
  $("ticker-price").textContent = last.price.toFixed(2);
  const first = points[0].price;
  const change = last.price - first;
  $("ticker-change").textContent = `${change >= 0 ? "+" : ""}${change.toFixed(2)} in ${Math.round((last.t - points[0].t) / 1000)} s`;
  $("ticker-updated").textContent = `Last update ${new Date(last.t).toLocaleTimeString()}.`;
}

// ---- start ------------------------------------------------------------------------------

startTicker();

const fromUrl = page.get("name");
if (fromUrl && fromUrl.trim()) join(fromUrl.trim().slice(0, 32));
