// planeflow's dashboard: renders /api/board and /api/tasks/<WI>, follows /api/stream.
// Plain DOM, no framework and no build step. Every value from the server is set as
// text (never as HTML), so a work item's title cannot inject markup.
"use strict";

const STAGES = {
  analysis: "Analysis", development: "Development", quality_gate: "Quality gate",
  review: "Review", merge: "Merge", awaiting_deploy: "Awaiting deploy",
  deploying: "Deploying", monitoring: "Monitoring", blocked: "Blocked", done: "Done",
  cancelled: "Cancelled",
};
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const mode = document.querySelector('meta[name="dashboard-mode"]').content;
const path = (() => {
  try { return decodeURIComponent(location.pathname); } catch { return location.pathname; }
})();
const taskMatch = path.match(/^\/tasks\/(.+)$/);
const workItem = taskMatch ? taskMatch[1] : null;
let lastBoard = null;
let lastTaskStamp = "";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function duration(seconds) {
  const two = (big, bigUnit, small, smallUnit) => small ? `${big}${bigUnit} ${small}${smallUnit}` : `${big}${bigUnit}`;
  if (seconds < 60) return `${seconds}s`;
  if (seconds < 3600) return two(Math.floor(seconds / 60), "m", seconds % 60, "s");
  if (seconds < 86400) return two(Math.floor(seconds / 3600), "h", Math.floor(seconds % 3600 / 60), "m");
  return two(Math.floor(seconds / 86400), "d", Math.floor(seconds % 86400 / 3600), "h");
}

// An element whose text is "<prefix><age of iso>", refreshed every second.
function since(iso, prefix = "", suffix = " ago") {
  return el("span", { class: "since", dataset: { since: iso || "", prefix, suffix } },
    iso ? prefix + duration(secondsSince(iso)) + suffix : prefix + "never");
}

function secondsSince(iso) {
  return Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
}

setInterval(() => {
  for (const node of document.querySelectorAll(".since")) {
    const { since: iso, prefix, suffix } = node.dataset;
    if (iso) node.textContent = prefix + duration(secondsSince(iso)) + suffix;
  }
}, 1000);

function notice(text, bad = false) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.classList.toggle("bad", bad);
  box.hidden = !text;
}

function setLive(state, text) {
  const live = document.getElementById("live");
  live.dataset.state = state;
  live.textContent = text;
}

async function getJSON(url) {
  const resp = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (resp.status === 401) {
    location.assign("/login?next=" + encodeURIComponent(location.pathname));
    throw new Error("login required");
  }
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

async function act(url, what) {
  try {
    const resp = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/json" }, body: "{}",
    });
    const body = await resp.json();
    notice(`${what}: ${body.result || body.error}`, !resp.ok);
  } catch (err) {
    notice(`${what}: ${err.message}`, true);
  }
  refresh();
}

function actionButtons(task) {
  const buttons = [];
  if (task.can_retry) {
    buttons.push(el("button", {
      class: "retry", type: "button",
      onclick: () => act(`/api/tasks/${encodeURIComponent(task.work_item)}/retry`,
        `retry ${task.work_item}`),
    }, "Retry"));
  }
  if (task.can_cancel) {
    buttons.push(el("button", {
      class: "cancel", type: "button",
      onclick: () => {
        if (confirm(`Cancel ${task.work_item}? Its running job is stopped.`)) {
          act(`/api/tasks/${encodeURIComponent(task.work_item)}/cancel`, `cancel ${task.work_item}`);
        }
      },
    }, "Cancel"));
  }
  return buttons;
}

function budgetText(task) {
  const [used, limit] = task.budget.attempts;
  const [seconds, secondsLimit] = task.budget.agent_seconds;
  const parts = [`attempts ${used}${limit ? "/" + limit : ""}`];
  parts.push(`agent ${duration(seconds)}${secondsLimit ? "/" + duration(secondsLimit) : ""}`);
  const [tokens, tokenLimit] = task.budget.tokens;
  if (tokens || tokenLimit) parts.push(`tokens ${tokens}${tokenLimit ? "/" + tokenLimit : ""}`);
  return parts.join(" · ");
}

function jobText(job) {
  if (!job) return el("span", { class: "muted" }, "no active job");
  return el("span", { class: "job" }, `job ${job.id} ${job.state} (attempt ${job.attempt}) `,
    since(job.started_at, "for ", ""));
}

function card(task) {
  return el("article", { class: "card", dataset: { workItem: task.work_item, stage: task.stage } },
    el("div", { class: "card-head" },
      el("a", { class: "wi", href: `/tasks/${encodeURIComponent(task.work_item)}` }, task.work_item),
      el("span", { class: "project" }, task.project)),
    el("div", { class: "title" }, task.title || "(no title)"),
    el("div", { class: "meta" }, jobText(task.active_job)),
    el("div", { class: "meta" }, since(task.created_at, "age ", ""), " · ", budgetText(task)),
    task.blocked_reason ? el("div", { class: "reason" }, task.blocked_reason) : null,
    el("div", { class: "buttons" }, actionButtons(task)));
}

function renderBoard(board) {
  lastBoard = board;
  const counts = document.getElementById("counts");
  counts.replaceChildren(...board.stages.map((stage) =>
    el("span", { class: "count", dataset: { stage } }, `${STAGES[stage] || stage} ${board.counts[stage]}`)));
  const columns = board.stages.map((stage) => {
    const tasks = board.tasks[stage] || [];
    const more = board.counts[stage] - tasks.length;
    return el("section", { class: "column", dataset: { stage } },
      el("h2", {}, STAGES[stage] || stage, el("span", { class: "n" }, board.counts[stage])),
      tasks.map(card),
      more > 0 ? el("p", { class: "muted" }, `and ${more} older`) : null);
  });
  document.getElementById("board").replaceChildren(...columns);
  renderQueues(board.queues);
  renderProjects(board.projects);
  renderActions(board.actions);
}

function renderQueues(queues) {
  document.querySelector("#queues tbody").replaceChildren(...queues.map((q) =>
    el("tr", { dataset: { queue: q.queue } }, el("td", {}, q.queue), el("td", {}, q.ready),
      el("td", {}, q.delayed), el("td", { class: q.dead ? "bad" : "" }, q.dead))));
  const dead = queues.flatMap((q) => q.dead_letters.map((d) => ({ ...d, queue: q.queue })));
  document.getElementById("dead-letters").replaceChildren(...(dead.length ? [
    el("h3", {}, "Dead-lettered messages"),
    el("table", { class: "dead" },
      el("thead", {}, el("tr", {}, ["queue", "message", "died", "error", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, dead.map((d) => el("tr", { dataset: { message: d.id } },
        el("td", {}, d.queue), el("td", {}, `${d.actor}${d.args}`),
        el("td", {}, since(new Date(d.died_at * 1000).toISOString())),
        el("td", { class: "error" }, d.error || "-"),
        el("td", {}, el("button", {
          type: "button", class: "requeue",
          onclick: () => act(`/api/dead-letters/${encodeURIComponent(d.id)}/requeue`, `requeue ${d.actor}`),
        }, "Requeue")))))),
  ] : []));
}

function renderProjects(projects) {
  document.querySelector("#projects tbody").replaceChildren(...projects.map((p) =>
    el("tr", { dataset: { project: p.name } },
      el("td", {}, p.name),
      el("td", {}, since(p.last_webhook)),
      el("td", {}, p.replays),
      el("td", {}, p.budget_remaining === null ? "-" : p.budget_remaining),
      el("td", {}, since(p.last_pass), p.last_pass_calls === null ? "" : ` (${p.last_pass_calls} calls)`),
      el("td", { class: p.webhooks_silent ? "bad" : "" },
        p.webhooks_silent ? "silent? (replays, no webhook)" : "ok"))));
}

function renderActions(actions) {
  document.getElementById("actions").replaceChildren(...(actions.length ? actions.map((a) =>
    el("li", {}, since(a.ts), " ", el("b", {}, a.action), ` ${a.target} by ${a.origin}: ${a.result}`))
    : [el("li", { class: "muted" }, "none yet")]));
}

function renderTask(task) {
  document.getElementById("t-wi").textContent = task.work_item;
  document.getElementById("t-title").textContent = task.title;
  const stage = document.getElementById("t-stage");
  stage.textContent = STAGES[task.stage] || task.stage;
  stage.dataset.stage = task.stage;
  const links = [];
  if (task.plane_url) links.push(el("a", { href: task.plane_url, rel: "noopener noreferrer" }, "work item in Plane"));
  if (task.pr_url) {
    const href = /^https?:\/\//.test(task.pr_url) ? task.pr_url : null;
    links.push(href ? el("a", { href, rel: "noopener noreferrer" }, "pull request")
      : el("span", {}, `pull request: ${task.pr_url}`));
  }
  document.getElementById("t-links").replaceChildren(...links.flatMap((l, i) => i ? [" · ", l] : [l]));
  const blocked = document.getElementById("t-blocked");
  blocked.hidden = !task.blocked_reason;
  blocked.textContent = task.blocked_reason ? `Blocked in ${task.failed_stage || "?"}: ${task.blocked_reason}` : "";
  document.getElementById("t-buttons").replaceChildren(...actionButtons(task));
  const facts = [["project", task.project], ["branch", task.branch], ["created", task.created_at.slice(0, 19).replace("T", " ")],
    ["rework loops", task.rework], ["budget used", budgetText(task)]];
  document.getElementById("t-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]),
    el("dt", {}, "active job"), el("dd", {}, jobText(task.active_job)));
  document.querySelector("#timeline tbody").replaceChildren(...task.timeline.map((e) =>
    el("tr", { dataset: { kind: e.kind } }, el("td", {}, e.ts.slice(0, 19).replace("T", " ")),
      el("td", {}, el("span", { class: "kind" }, e.kind)),
      el("td", {}, e.kind === "ignored" ? e.message.replace(/^ignored: /, "") : e.message))));
}

let taskError = false;
async function loadTask() {
  try {
    renderTask(await getJSON(`/api/tasks/${encodeURIComponent(workItem)}`));
    if (taskError) { notice(""); taskError = false; }  // an action's answer stays shown
  } catch (err) {
    notice(`${workItem}: ${err.message}`, true);
    taskError = true;
  }
}

function onBoard(board) {
  if (workItem) {
    const row = Object.values(board.tasks).flat().find((t) => t.work_item === workItem.toUpperCase());
    const stamp = row ? row.updated_at + row.stage + row.last_event : "";
    if (stamp !== lastTaskStamp || !row) { lastTaskStamp = stamp; loadTask(); }
  } else {
    renderBoard(board);
  }
}

async function refresh() {
  try { onBoard(await getJSON("/api/board")); } catch (err) { notice(err.message, true); }
}

// One live stream per visible tab: a hidden tab lets its connection go (a browser
// opens only six to a host), and catches up when it is shown again.
let stream = null;
let polling = null;

function follow() {
  if (stream) return;
  stream = new EventSource("/api/stream");
  stream.addEventListener("board", (event) => {
    if (polling) { clearInterval(polling); polling = null; }
    setLive("live", "live");
    onBoard(JSON.parse(event.data));
  });
  stream.addEventListener("problem", (event) => setLive("problem", `Redis: ${event.data}`));
  stream.onerror = () => {
    setLive("connecting", "reconnecting…");
    // Where a proxy buffers the stream, poll until it delivers again.
    if (!polling) polling = setInterval(refresh, 1500);
  };
}

function pause() {
  if (stream) { stream.close(); stream = null; }
  if (polling) { clearInterval(polling); polling = null; }
  setLive("paused", "paused (tab hidden)");
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) pause(); else { refresh(); follow(); }
});

document.getElementById(workItem ? "task-view" : "board-view").hidden = false;
document.getElementById("logout").hidden = mode !== "token";
document.getElementById("crumbs").replaceChildren(...(workItem ? [el("a", { href: "/" }, "board"), ` / ${workItem}`] : []));
document.title = workItem ? `${workItem} · planeflow` : "planeflow";
refresh();
if (!document.hidden) follow();
