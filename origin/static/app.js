"use strict";
const WAYS = [
  ["sync", "Old way: computed in the request"],
  ["positioned", "Positioned: fetched at the edge"],
  ["pushed", "Pushed: server-sent event from the edge"],
];
let config = null;

// Through the front door (it marks its answers with a Via header) the page asks
// for offers at its own address, /offers/...: the front door routes them to the
// edge of the region the login answer put in a cookie. Opened straight on the
// origin, it asks the edges themselves.
async function loadConfig() {
  const r = await fetch("/config.json");
  config = await r.json();
  const region = document.getElementById("region");
  if ((r.headers.get("via") || "").includes("positioning-front-door")) {
    config.edges = { "": "" };
    region.add(new Option("chosen at login, through the front door", ""));
    region.dataset.frontDoor = "true";
  } else {
    for (const [name, url] of Object.entries(config.edges)) {
      region.add(new Option(`${name} (${url})`, name));
    }
  }
  document.getElementById("config-note").textContent =
    `Model latency at the origin and the worker: ${config.model_latency_ms} ms.`;
}

document.getElementById("user-select").addEventListener("change", (e) => {
  const [user, ip] = e.target.value.split("|");
  if (user !== "custom") {
    document.getElementById("user-id").value = user;
    document.getElementById("user-ip").value = ip;
  } else {
    document.getElementById("user-id").value = "";
    document.getElementById("user-id").focus();
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function body() {
  const b = { user_id: document.getElementById("user-id").value.trim() };
  const ip = document.getElementById("user-ip").value.trim();
  if (ip) b.ip = ip;
  return JSON.stringify(b);
}

// Every login carries an Idempotency-Key; a 503 is retried with the same key,
// so the login is counted once however many attempts it takes.
async function post(path) {
  const t0 = performance.now();
  const headers = { "content-type": "application/json", "idempotency-key": crypto.randomUUID() };
  const payload = body();
  for (let attempt = 1; ; attempt++) {
    const r = await fetch(path, { method: "POST", headers, body: payload });
    const json = await r.json();
    if (r.status === 503 && attempt < 5) {
      await sleep(1000 * Number(r.headers.get("retry-after") || 1));
      continue;
    }
    if (!r.ok) throw new Error(`${path}: ${r.status} ${json.error || ""}${json.field ? " (" + json.field + ")" : ""}`);
    return [json, performance.now() - t0];
  }
}

async function sync() {
  const [offer, ms] = await post("/offers/sync");
  return { offer, waits: [ms], gap: 0 };
}

async function positioned(edge, gap) {
  const [login, loginMs] = await post("/login");
  await sleep(gap);
  const t0 = performance.now();
  const r = await fetch(`${edge}/offers/${encodeURIComponent(login.ticket)}?wait=10`);
  const offer = await r.json();
  if (!r.ok) throw new Error(`edge: ${r.status} ${offer.status || ""}`);
  return { offer, waits: [loginMs, performance.now() - t0], gap };
}

async function pushed(edge, gap) {
  const [login, loginMs] = await post("/login");
  await sleep(gap);
  const t0 = performance.now();
  const offer = await new Promise((resolve, reject) => {
    const source = new EventSource(`${edge}/offers/${encodeURIComponent(login.ticket)}/events`);
    source.addEventListener("offer", (e) => { source.close(); resolve(JSON.parse(e.data)); });
    source.addEventListener("timeout", () => { source.close(); reject(new Error("no offer in time")); });
    source.onerror = () => { source.close(); reject(new Error("event stream failed")); };
  });
  return { offer, waits: [loginMs, performance.now() - t0], gap };
}

function money(minor, currency, locale) {
  const format = new Intl.NumberFormat(locale, { style: "currency", currency });
  const digits = format.resolvedOptions().maximumFractionDigits;
  return format.format(minor / 10 ** digits);
}

function showOffer(offer) {
  const card = document.getElementById("offer");
  const rows = offer.items.map((it) => `<tr><td>${escape(it.name)}</td><td>${escape(it.category)}</td>
    <td class="price">${offer.discount.percent ? `<s>${money(it.price, offer.currency, offer.locale)}</s> ` : ""}
    ${money(it.offer_price, offer.currency, offer.locale)}</td></tr>`).join("");
  card.innerHTML = `<h2>Your offer</h2>
    <p>For <b>${escape(offer.user_id)}</b> in ${escape(offer.country)} (${escape(offer.currency)}, ${escape(offer.locale)}), visit ${offer.visit}
    ${offer.discount.percent ? `<span class="badge">${escape(offer.discount.code)}: −${offer.discount.percent}%</span>` : ""}</p>
    <table data-testid="offer-items"><tr><th>item</th><th>category</th><th class="price">price</th></tr>${rows}</table>`;
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

function showTimeline(results) {
  const total = (r) => r.waits.reduce((a, b) => a + b, 0) + r.gap;
  const longest = Math.max(...Object.values(results).filter((r) => !r.error).map(total), 1);
  const scale = (ms) => `${(100 * ms / longest).toFixed(2)}%`;
  document.getElementById("timeline").innerHTML = WAYS.map(([way, label]) => {
    const r = results[way];
    if (r.error) return `<div class="row" data-way="${way}"><div class="name"><span>${label}</span><span class="error">${escape(r.error)}</span></div></div>`;
    const waited = r.waits.reduce((a, b) => a + b, 0);
    let x = 0; const segs = [];
    r.waits.forEach((ms, i) => {
      segs.push(`<div class="seg ${way}" data-left="${scale(x)}" data-width="${scale(ms)}"></div>`);
      x += ms;
      if (i === 0 && r.gap) { segs.push(`<div class="seg gap" data-left="${scale(x)}" data-width="${scale(r.gap)}"></div>`); x += r.gap; }
    });
    return `<div class="row" data-way="${way}"><div class="name"><span>${label}</span>
      <span><b class="waited" data-ms="${waited.toFixed(1)}">${waited.toFixed(0)} ms</b> waited</span></div>
      <div class="track">${segs.join("")}</div></div>`;
  }).join("");
  // Positions through the CSSOM: the page's policy allows no inline style attributes.
  for (const seg of document.querySelectorAll("#timeline .seg")) {
    seg.style.left = seg.dataset.left;
    seg.style.width = seg.dataset.width;
  }
}

document.getElementById("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const button = document.getElementById("login");
  button.disabled = true;
  const edge = config.edges[document.getElementById("region").value];
  const gap = Math.max(0, Number(document.getElementById("gap").value) || 0);
  const runs = { sync: sync(), positioned: positioned(edge, gap), pushed: pushed(edge, gap) };
  const results = {};
  for (const [way, promise] of Object.entries(runs)) {
    try { results[way] = await promise; } catch (err) { results[way] = { error: err.message }; }
  }
  const shown = results.positioned.offer || results.pushed.offer || results.sync.offer;
  if (shown) showOffer(shown);
  showTimeline(results);
  button.disabled = false;
});

loadConfig();
