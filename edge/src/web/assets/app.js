// Polls /api/status once a second and redraws; the frame is fetched only when a new one exists.
"use strict";

const POLL_MS = 1000;
let lastFrame = -1;

function $(id) { return document.getElementById(id); }

function ms(q) {
  const f = (v) => (v == null ? "-" : v.toFixed(1) + " ms");
  return f(q.p50) + " / " + f(q.p99);
}

function duration(s) {
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? h + " h " : "") + (h || m ? m + " min " : "") + (s % 60) + " s";
}

function setDecision(text, cls) {
  const d = $("decision");
  d.textContent = text;
  d.className = "decision " + cls;
}

function banner(text) {
  const b = $("banner");
  b.textContent = text || "";
  b.classList.toggle("hidden", !text);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function render(s) {
  if (s.running) {
    setDecision(s.state.toUpperCase(), "state-" + s.state);
  } else {
    setDecision("STOPPED", "state-stopped");
  }
  if (!s.running) {
    banner("The screening loop has stopped (" + (s.stop_reason || "unknown") + "). The pins are in their safe state.");
  } else if (s.health === "stalled") {
    banner("No frames: " + s.health_detail + ". Check the camera.");
  } else {
    banner("");
  }
  const score = s.p_malignant == null ? "-" : s.p_malignant.toFixed(3);
  const smooth = s.smoothed == null ? "-" : s.smoothed.toFixed(3);
  $("score").textContent = s.idle_reason ? "idle: " + s.idle_reason
    : "score " + score + " (smoothed " + smooth + ")";
  $("frames").textContent = s.frames;
  $("fps").textContent = s.fps.toFixed(1);
  $("latency").textContent = ms(s.latency_ms);
  $("infer").textContent = ms(s.infer_ms);
  $("idle").textContent = s.idle_frames + (s.frame_errors ? " (" + s.frame_errors + " not screenable)" : "");
  $("dropped").textContent = s.dropped;
  $("uptime").textContent = duration(s.uptime_s);
  $("source").textContent = s.source;
  $("health").textContent = s.health + ": " + s.health_detail;
  if (s.model) {
    $("model").textContent = "model " + s.model.name + " · " + s.model.precision + " · sha256 " + s.model.sha256_prefix;
  }

  const pins = $("pins");
  pins.replaceChildren();
  if (s.pins) {
    for (const p of s.pins) {
      const li = document.createElement("li");
      li.textContent = p.role + " (GPIO " + p.line + ") " + (p.on ? "on" : "off");
      if (p.on) li.className = "on";
      pins.appendChild(li);
    }
  } else {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "console mode: no pins driven";
    pins.appendChild(li);
  }

  const body = $("transitions");
  body.replaceChildren();
  for (const t of s.transitions) {
    const tr = document.createElement("tr");
    cell(tr, t.time.replace("T", " ").replace("Z", ""));
    cell(tr, t.frame);
    cell(tr, t.from + " → " + t.to);
    cell(tr, t.p_malignant == null ? "-" : t.p_malignant.toFixed(3));
    const td = cell(tr, "");
    if (t.thumbnail) {
      const img = document.createElement("img");
      img.src = t.thumbnail;
      img.alt = "frame " + t.frame;
      td.appendChild(img);
    }
    body.appendChild(tr);
  }

  if (s.frames !== lastFrame && s.frames > 0) {
    lastFrame = s.frames;
    $("frame").src = "/frame.jpg?n=" + s.frames;
  }
}

async function poll() {
  try {
    const r = await fetch("/api/status", { cache: "no-store", credentials: "same-origin" });
    if (r.status === 401) {
      banner("Not signed in: open /login?token=... with the rig's token.");
    } else if (!r.ok) {
      banner("The rig answered " + r.status + ".");
    } else {
      render(await r.json());
    }
  } catch (e) {
    setDecision("OFFLINE", "state-stopped");
    banner("The rig does not answer: the loop has stopped or the network is down.");
  }
  setTimeout(poll, POLL_MS);
}

poll();
