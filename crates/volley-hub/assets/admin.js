// The admin page served at /admin by `volley serve`: polls /admin/api/stats
// every second with the admin key (from the URL hash `#key=...`, or asked
// for) and shows connections, subscriptions, message rates and channels.
// Server data is put into the page as text only.

const POLL_MS = 1000;
const RATE_POINTS = 120;

const $ = (id) => document.getElementById(id);
const number = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

let key = "";
let timer = null;
let inFlight = false;
const rates = [];

function keyFromHash() {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ""));
  return params.get("key") || "";
}

function start(newKey) {
  key = newKey;
  $("key-form").hidden = true;
  $("stats").hidden = false;
  status("connecting", "loading…");
  if (timer !== null) clearInterval(timer);
  timer = setInterval(poll, POLL_MS);
  poll();
}

function askForKey(message) {
  if (timer !== null) clearInterval(timer);
  timer = null;
  $("stats").hidden = true;
  $("key-form").hidden = false;
  status("disconnected", message);
  $("key-input").focus();
}

function status(state, text) {
  const node = $("admin-status");
  node.dataset.state = state;
  node.textContent = text;
}

async function poll() {
  if (inFlight) return;
  inFlight = true;
  try {
    const response = await fetch("/admin/api/stats", {
      headers: { Authorization: `Bearer ${key}` },
      cache: "no-store",
    });
    if (response.status === 401 || response.status === 403) {
      askForKey("the admin key was refused");
      return;
    }
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    status("connected", `live, updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    status("connecting", `cannot reach the hub (${error.message}); retrying`);
  } finally {
    inFlight = false;
  }
}

function show(id, value) {
  $(id).textContent = typeof value === "number" ? number.format(value) : "–";
}

function render(stats) {
  show("connections", stats.connections);
  show("subscriptions", stats.subscriptions);
  show("messages-in", stats.messages_in_per_s);
  show("messages-out", stats.messages_out_per_s);
  show("bytes-in", stats.bytes_in_per_s);
  show("bytes-out", stats.bytes_out_per_s);
  const uptime = typeof stats.uptime_ms === "number" ? `, up ${formatDuration(stats.uptime_ms)}` : "";
  $("server-info").textContent = `volley ${stats.version ?? "?"}${uptime}`;

  rates.push(typeof stats.messages_out_per_s === "number" ? stats.messages_out_per_s : 0);
  if (rates.length > RATE_POINTS) rates.splice(0, rates.length - RATE_POINTS);
  drawRates();

  // Every live node of the cluster (this one first; the memory engine has one).
  const nodes = Array.isArray(stats.nodes) ? stats.nodes : [];
  $("nodes").replaceChildren(...nodes.map((n) => {
    const here = n.id === stats.node ? " (this node)" : "";
    return tableRow([`${n.name ?? "?"}${here}`, fmt(n.num_connections), fmt(n.num_subscriptions),
      typeof n.uptime_ms === "number" ? formatDuration(n.uptime_ms) : "–"]);
  }));
  $("node-count").textContent = `(${nodes.length})`;

  const channels = Array.isArray(stats.channels) ? stats.channels.slice() : [];
  channels.sort((a, b) => (b.subscribers ?? 0) - (a.subscribers ?? 0) || String(a.channel).localeCompare(String(b.channel)));
  const rows = channels.map((c) => {
    const row = tableRow([String(c.channel), fmt(c.subscribers), fmt(c.offset)]);
    row.dataset.channel = String(c.channel);
    return row;
  });
  $("channels").replaceChildren(...rows);
  $("channel-count").textContent = `(${channels.length})`;
}

/** A table row: the first cell a row header, the others numbers. */
function tableRow(cells) {
  const row = document.createElement("tr");
  cells.forEach((text, i) => {
    const cell = document.createElement(i === 0 ? "th" : "td");
    if (i === 0) cell.scope = "row";
    else cell.className = "num";
    cell.textContent = text;
    row.append(cell);
  });
  return row;
}

function fmt(value) {
  return typeof value === "number" ? number.format(value) : "–";
}

function drawRates() {
  const max = Math.max(1, ...rates);
  // Until two minutes have passed, the samples so far fill the width.
  const step = 240 / Math.max(rates.length - 1, 1);
  const points = rates.map((r, i) => `${(i * step).toFixed(1)},${(57 - (r / max) * 54).toFixed(1)}`);
  $("rate-line").setAttribute("points", points.join(" "));
}

function formatDuration(ms) {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h > 0 ? `${h} h ${m} min` : m > 0 ? `${m} min ${s % 60} s` : `${s} s`;
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("key-input").value.trim();
  if (!value) return;
  // Keep the key in the hash (never sent to the server in a request line) so a reload keeps working.
  history.replaceState(null, "", `#key=${encodeURIComponent(value)}`);
  start(value);
});

window.addEventListener("hashchange", () => {
  const fromHash = keyFromHash();
  if (fromHash && fromHash !== key) start(fromHash);
});

const initial = keyFromHash();
if (initial) start(initial);
else askForKey("enter the admin key (volley serve prints a link with it)");
