// Review screen: one item at a time, keyboard first. The server owns all state; this page only shows it
// and sends one action per key press (never two at once). Text from the manifest goes in via textContent.
"use strict";

const $ = (id) => document.getElementById(id);
let state = null;
let busy = false;
let showRef = false;
let zoomed = false;

function setMessage(text, kind) {
  const m = $("message");
  m.textContent = text || "";
  m.className = text ? (kind || "info") : "";
}

async function request(url, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const resp = await fetch(url, opts);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = { error: `server answered ${resp.status}` }; }
  return { ok: resp.ok, status: resp.status, data };
}

async function loadState() {
  const r = await request("/api/state");
  if (!r.ok) { setMessage(r.data.error || "cannot load the review state", "error"); return; }
  render(r.data);
}

async function act(action, reason) {
  if (busy || !state) return;
  busy = true;
  document.body.dataset.busy = "1";
  try {
    const body = { action, item_id: state.item ? state.item.id : null };
    if (reason) body.reason = reason;
    const r = await request("/api/action", body);
    if (r.ok) {
      const before = state.item && state.item.id, mode = state.mode;
      showRef = false; zoomed = false;
      render(r.data.state);
      setMessage(describeDone(action, before, mode), "info");
    } else {
      if (r.data.state) render(r.data.state);
      setMessage(r.data.error || `refused (${r.status})`, "error");
    }
  } catch (e) {
    setMessage(`The server did not answer (${e.message}); nothing was lost: reload when it is back.`, "error");
  } finally {
    busy = false;
    delete document.body.dataset.busy;
  }
}

function describeDone(action, id, mode) {
  if (action === "back") return "Went back one item.";
  const words = mode === "verify" ? { accept: "restored", delete: "deletion confirmed", skip: "skipped" }
    : { accept: "accepted", delete: "deleted", skip: "skipped" };
  return `${id}: ${words[action]}.`;
}

function render(s) {
  state = s;
  const p = s.progress;
  const item = s.item;
  document.body.dataset.mode = s.mode;
  document.body.dataset.itemId = item ? item.id : "";
  document.body.classList.toggle("show-ref", showRef);
  $("phase").textContent = { review: "Pass 1: review", verify: "Pass 2: verify deletions", done: "Done" }[s.mode];
  renderCounts(p, s.mode);
  renderFamilies(p.per_family);
  $("limits").textContent = `Deletions: ${p.deleted} of at most ${p.max_deletions} ` +
    `(${Math.round(p.max_delete_frac * 100)}% of ${p.total}). Removed before review: ` +
    `${p.auto_removed} box over the size limit, ${p.removed_in_manifest} by the assemble step.`;
  $("file").textContent = `Decisions are saved at once in ${s.decisions_file}`;
  $("accept-label").textContent = s.mode === "verify" ? "restore" : "accept";
  $("delete-label").textContent = s.mode === "verify" ? "confirm deletion" : "delete";
  hideReasons();
  const doneBox = $("done");
  if (!item) {
    $("frame").hidden = true; $("zoom").hidden = true; doneBox.hidden = false;
    doneBox.textContent = `All ${p.total} items of batch ${s.batch} are reviewed and every deletion is verified ` +
      `(${p.deleted} deleted). Decisions are in ${s.decisions_file}. You can close this tab; press b to go back.`;
    for (const id of ["label-object", "label-distortion", "label-view", "label-position", "current-decision"]) {
      $(id).textContent = "";
    }
  } else {
    doneBox.hidden = true;
    $("label-object").textContent = item.object;
    $("label-distortion").textContent = `${item.family_name} \u00b7 ${item.severity} (level ${item.level})`;
    $("label-position").textContent = s.mode === "verify"
      ? `deleted item ${item.position} of ${item.of}` : `item ${item.position} of ${item.of}`;
    $("current-decision").textContent = describeDecision(item.decision);
    showImage();
  }
  if (s.message) setMessage(s.message, "error");
  for (const b of document.querySelectorAll("#buttons button")) b.disabled = !item && b.dataset.action !== "back";
  prefetch(s.prefetch || []);
}

// Load the next items' images while the reviewer looks at this one: the server sends them with
// Cache-Control, so the next screen shows at once. Kept referenced until loaded so none is dropped early.
const prefetched = new Map();
function prefetch(urls) {
  for (const url of urls) {
    if (prefetched.has(url)) continue;
    const im = new Image();
    im.onload = im.onerror = () => { if (prefetched.size > 32) prefetched.delete(prefetched.keys().next().value); };
    im.src = url;
    prefetched.set(url, im);
  }
}

function renderCounts(p, mode) {
  const c = $("counts");
  c.textContent = "";
  const parts = [["reviewed", p.reviewed], ["remaining", p.remaining], ["deleted", p.deleted]];
  if (mode !== "review") parts.push(["to verify", p.to_verify]);
  parts.forEach(([label, n], i) => {
    const span = document.createElement("span");
    span.id = "count-" + label.replace(" ", "-");
    const b = document.createElement("b");
    b.textContent = String(n);
    span.append(b, ` ${label}`);
    c.append(span);
    if (i < parts.length - 1) c.append(" \u00b7 ");
  });
}

function renderFamilies(rows) {
  const body = document.querySelector("#families tbody");
  body.textContent = "";
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.family = r.family;
    if (r.remaining === 0) tr.className = "complete";
    for (const v of [r.name, `${r.reviewed}/${r.total}`, r.remaining, r.deleted]) {
      const td = document.createElement("td");
      td.textContent = String(v);
      tr.append(td);
    }
    body.append(tr);
  }
}

function describeDecision(d) {
  if (!d) return "";
  const who = d.by ? ` by ${d.by}` : "";
  if (d.status === "accepted") return `Current decision: accepted${who}${d.verified ? " (restored in verification)" : ""}.`;
  const reason = state.reasons[d.reason] || d.reason;
  return `Current decision: deleted (${reason})${who}${d.verified ? ", confirmed" : ""}.`;
}

function showImage() {
  const item = state.item;
  const img = $("image");
  const url = showRef ? item.ref_url : item.dist_url;
  $("label-view").textContent = (showRef ? "REFERENCE (undistorted)" : "distorted") + (zoomed ? " \u00b7 zoomed to box" : "");
  document.body.classList.toggle("show-ref", showRef);
  if (img.getAttribute("src") !== url) {
    img.onload = () => { fitImage(); placeBox(); if (zoomed) drawZoom(); };
    img.onerror = () => reportImageError(url);
    img.setAttribute("src", url);
  } else {
    fitImage();
    placeBox();
    if (zoomed) drawZoom();
  }
  $("frame").hidden = zoomed;
  $("zoom").hidden = !zoomed;
}

// Fit the image to the stage keeping its aspect ratio. Enlarged images are drawn with hard pixel edges so
// upscaling never smooths noise or blocking into something that looks like blur.
function fitImage() {
  const img = $("image");
  if (!img.naturalWidth) return;
  const stage = $("stage");
  const scale = Math.min(stage.clientWidth / img.naturalWidth, stage.clientHeight / img.naturalHeight);
  img.style.width = `${Math.floor(img.naturalWidth * scale)}px`;
  img.style.height = `${Math.floor(img.naturalHeight * scale)}px`;
  img.style.imageRendering = scale > 1 ? "pixelated" : "auto";
}

async function reportImageError(url) {
  const r = await request(url);
  setMessage(r.data && r.data.error ? r.data.error : `image ${url} could not be loaded`, "error");
}

// The box is in original pixels; percentages of the original size place it on the image at any display size.
function placeBox() {
  const item = state.item;
  const [x1, y1, x2, y2] = item.box;
  const box = $("box");
  box.style.left = `${(100 * x1) / item.width}%`;
  box.style.top = `${(100 * y1) / item.height}%`;
  box.style.width = `${(100 * (x2 - x1)) / item.width}%`;
  box.style.height = `${(100 * (y2 - y1)) / item.height}%`;
  box.hidden = false;
}

// Zoom: crop the box plus a margin, enlarge it without smoothing so fine artefacts stay visible.
function drawZoom() {
  const item = state.item;
  const img = $("image");
  if (!img.complete || !img.naturalWidth) return;
  const [x1, y1, x2, y2] = item.box;
  const sx = img.naturalWidth / item.width, sy = img.naturalHeight / item.height;
  const mx = Math.round((x2 - x1) * 0.15), my = Math.round((y2 - y1) * 0.15);
  const cx1 = Math.max(0, x1 - mx), cy1 = Math.max(0, y1 - my);
  const cx2 = Math.min(item.width, x2 + mx), cy2 = Math.min(item.height, y2 + my);
  const stage = $("stage");
  const scale = Math.min(stage.clientWidth / (cx2 - cx1), stage.clientHeight / (cy2 - cy1));
  const canvas = $("zoom");
  canvas.width = Math.max(1, Math.floor((cx2 - cx1) * scale));
  canvas.height = Math.max(1, Math.floor((cy2 - cy1) * scale));
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, cx1 * sx, cy1 * sy, (cx2 - cx1) * sx, (cy2 - cy1) * sy, 0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = showRef ? "#00e676" : "#ff1744";
  ctx.lineWidth = 2;
  if (showRef) ctx.setLineDash([8, 6]);
  ctx.strokeRect((x1 - cx1) * scale, (y1 - cy1) * scale, (x2 - x1) * scale, (y2 - y1) * scale);
}

function showReasons() { $("reason-panel").hidden = false; setMessage("Delete: press 1, 2 or 3 for the reason (Esc cancels).", "info"); }
function hideReasons() { $("reason-panel").hidden = true; }
function reasonsOpen() { return !$("reason-panel").hidden; }

function pressDelete() {
  if (!state || !state.item) return;
  if (!state.can_delete) { setMessage(state.limit_message, "error"); return; }
  if (state.mode === "verify") { act("delete"); return; }  // confirming keeps the first-pass reason
  showReasons();
}

function toggle(which) {
  if (!state || !state.item) return;
  if (which === "ref") showRef = !showRef; else zoomed = !zoomed;
  showImage();
}

const REASON_KEYS = { 1: "object_mismatch", 2: "not_perceptible", 3: "other" };

document.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.altKey || e.metaKey || e.repeat) return;  // leave browser shortcuts alone; no auto-repeat
  if (reasonsOpen()) {
    if (REASON_KEYS[e.key]) { e.preventDefault(); hideReasons(); act("delete", REASON_KEYS[e.key]); }
    else if (e.key === "Escape") { e.preventDefault(); hideReasons(); setMessage("Delete cancelled.", "info"); }
    return;
  }
  const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
  const handlers = {
    a: () => act("accept"), Enter: () => act("accept"), s: () => act("skip"), d: pressDelete,
    b: () => act("back"), ArrowLeft: () => act("back"), r: () => toggle("ref"), z: () => toggle("zoom"),
  };
  if (handlers[key]) { e.preventDefault(); handlers[key](); }
});

document.addEventListener("click", (e) => {
  const b = e.target.closest("button");
  if (!b) return;
  b.blur();  // so Enter keeps meaning "accept", not "press the focused button again"
  if (b.dataset.action === "delete") pressDelete();
  else if (b.dataset.action) act(b.dataset.action);
  else if (b.dataset.toggle) toggle(b.dataset.toggle);
  else if (b.dataset.reason) { hideReasons(); act("delete", b.dataset.reason); }
  else if (b.dataset.cancel !== undefined) { hideReasons(); setMessage("Delete cancelled.", "info"); }
});

window.addEventListener("resize", () => {
  if (!state || !state.item) return;
  fitImage();
  if (zoomed) drawZoom();
});
loadState();
