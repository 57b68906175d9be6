// The promptrec playground: two template editors (A, B), lint as you type, seeded renders side by side
// with a line diff, token counts and leak warnings, chunked scoring with progress and cancel, and save.
// Plain browser JavaScript, no build step: every computation happens on the server (/playground/api/*).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const panels = ["a", "b"].map((id) => $(`#panel-${id}`));
const state = { templates: [], maxTokens: 0, rendered: null, scoring: null };
const CHUNK = 2; // examples per score request: progress moves, and cancelling wastes little

async function api(path, body, signal) {
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function status(text) {
  $("#status").textContent = text;
}

function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function frontMatterName(text) {
  const match = /^---\n[\s\S]*?^name:\s*["']?([^"'\n]+?)["']?\s*$/m.exec(text);
  return match ? match[1] : "";
}

// ------------------------------------------------------------------ start
async function start() {
  const data = await api("/playground/api/state");
  state.maxTokens = data.max_prompt_tokens;
  $("#model").textContent = `model ${data.model} · serving template ${data.template} · max ${data.max_prompt_tokens} prompt tokens · saves to ${data.templates_dir}/`;
  fillSelect($("#split"), data.splits);
  fillSelect($("#choice"), data.choices);
  fillTemplates(data.templates);
  const first = data.templates.findIndex((t) => t.name === data.template);
  for (const panel of panels) {
    $(".pick", panel).value = String(Math.max(first, 0));
    setText(panel, data.templates[Math.max(first, 0)].text);
  }
  status(data.splits.length ? "ready" : "no --data: lint and save only");
}

function fillSelect(select, values) {
  select.replaceChildren(...values.map((value) => new Option(value, value)));
}

function fillTemplates(templates) {
  state.templates = templates;
  for (const panel of panels) {
    const keep = $(".pick", panel).value;
    $(".pick", panel).replaceChildren(
      ...templates.map((t, i) => new Option(`${t.name} (${t.origin === "prompts" ? "shipped" : t.origin})`, String(i))),
    );
    if (keep) $(".pick", panel).value = keep;
  }
}

function setText(panel, text) {
  $(".editor", panel).value = text;
  $(".save-name", panel).value = frontMatterName(text);
  lint(panel);
}

// ------------------------------------------------------------------ lint
async function lint(panel) {
  const list = $(".lint", panel);
  try {
    const { problems } = await api("/playground/api/check", { text: $(".editor", panel).value });
    list.className = problems.length ? "lint" : "lint ok";
    list.replaceChildren(
      ...(problems.length
        ? problems.map((p) => {
            const item = element("li", "", p.message);
            if (p.source !== null) {
              item.append(" — line " + p.line + ": ", element("code", "", p.source));
            }
            return item;
          })
        : [element("li", "", "✓ lint clean")]),
    );
    if (!problems.length && state.rendered) renderExamples();
  } catch (error) {
    list.className = "lint";
    list.replaceChildren(element("li", "", error.message));
  }
}

// ------------------------------------------------------------------ render
function request() {
  return {
    split: $("#split").value,
    num_examples: Number($("#num").value),
    seed: Number($("#seed").value),
  };
}

async function renderExamples() {
  const texts = panels.map((panel) => $(".editor", panel).value);
  const params = request();
  status("rendering…");
  try {
    const data = await api("/playground/api/render", { texts, ...params });
    state.rendered = { ...params, texts, examples: data.examples };
    drawExamples(data.examples);
    status(`rendered ${data.examples.length} examples of ${params.split} (seed ${params.seed})`);
  } catch (error) {
    status(`render failed: ${error.message}`);
  }
}

function drawExamples(examples) {
  const results = $("#results");
  results.replaceChildren();
  for (const example of examples) {
    const card = element("div", "example");
    card.dataset.position = example.position;
    const title = element("h3");
    title.append(
      element("span", "", `#${example.position} ${example.example_id ?? ""}`),
      element("span", "", `label ${example.label}`),
      element("span", "score score-A"),
      element("span", "score score-B"),
    );
    const columns = element("div", "prompts");
    example.prompts.forEach((prompt, i) => columns.append(drawPrompt("AB"[i], prompt)));
    card.append(title, columns);
    if (example.diff) card.append(drawDiff(example.diff));
    results.append(card);
  }
}

function drawPrompt(name, prompt) {
  const box = element("div", `prompt prompt-${name}`);
  if (prompt.error) {
    box.append(element("div", "error", `${name}: ${prompt.error}`));
    return box;
  }
  box.append(element("pre", "", prompt.text));
  box.append(element("div", "meta tokens", `${name}: ${prompt.num_tokens} tokens`));
  if (prompt.truncated) {
    box.append(element("div", "warn truncated", `⚠ longer than ${state.maxTokens} tokens: it would be truncated`));
  }
  for (const leak of prompt.leaks) box.append(element("div", "warn leak", `⚠ leak: ${leak}`));
  return box;
}

function drawDiff(diff) {
  const pre = element("pre", "diff");
  const changed = diff.some((line) => line.op !== " ");
  if (!changed) {
    pre.append(element("div", "same", "A and B render the same prompt"));
    return pre;
  }
  for (const line of diff) {
    const kind = line.op === "+" ? "add" : line.op === "-" ? "del" : "same";
    pre.append(element("div", kind, `${line.op} ${line.text}`));
  }
  return pre;
}

// ------------------------------------------------------------------ score
async function scoreExamples() {
  if (!state.rendered) await renderExamples();
  if (!state.rendered) return;
  const run = { controller: new AbortController(), done: 0 };
  const { split, num_examples, seed, examples } = state.rendered;
  const positions = examples.map((e) => e.position);
  const choice = $("#choice").value;
  state.scoring = run;
  setScoring(true, positions.length * panels.length);
  try {
    for (const [i, panel] of panels.entries()) {
      const name = "AB"[i];
      const text = $(".editor", panel).value;
      const rows = [];
      for (let at = 0; at < positions.length; at += CHUNK) {
        const chunk = positions.slice(at, at + CHUNK);
        const body = { text, split, num_examples, seed, positions: chunk, choice };
        const data = await api("/playground/api/score", body, run.controller.signal);
        for (const row of data.rows) showScore(name, row);
        rows.push(...data.rows);
        run.done += chunk.length;
        $("#progress").value = run.done;
        status(`scoring ${run.done}/${$("#progress").max}…`);
      }
      const summary = await api("/playground/api/metrics", {
        labels: rows.map((r) => r.label),
        scores: rows.map((r) => r.score),
      });
      $(".metrics", panel).textContent =
        `${name} (${choice}): AUC ${summary.auc === null ? "n/a (one label only)" : summary.auc.toFixed(3)}` +
        ` · log loss ${summary.logloss.toFixed(3)} · n=${summary.num_examples}`;
    }
    status(`scored ${run.done} prompts with ${choice}`);
  } catch (error) {
    status(run.controller.signal.aborted ? `cancelled after ${run.done} prompts` : `scoring failed: ${error.message}`);
  } finally {
    setScoring(false);
  }
}

function showScore(name, row) {
  const card = $(`.example[data-position="${row.position}"]`);
  if (!card) return;
  $(`.score-${name}`, card).textContent =
    `${name}: P(yes) ${row.probability.toFixed(3)} · log-odds ${row.score >= 0 ? "+" : ""}${row.score.toFixed(3)}`;
}

function setScoring(on, total) {
  $("#score").disabled = on;
  $("#render").disabled = on;
  $("#cancel").disabled = !on;
  $("#progress").hidden = !on;
  if (on) {
    $("#progress").max = total;
    $("#progress").value = 0;
    for (const panel of panels) $(".metrics", panel).textContent = "";
  }
}

// ------------------------------------------------------------------ save
async function save(panel) {
  const name = $(".save-name", panel).value.trim();
  const note = $(".save-status", panel);
  let text = $(".editor", panel).value;
  // The front-matter name must equal the file name: saving under a new name renames the template too.
  text = text.replace(/^(---\n[\s\S]*?^name:)[^\n]*$/m, `$1 ${name}`);
  try {
    const body = { name, text, overwrite: $(".overwrite", panel).checked };
    const saved = await api("/playground/api/save", body);
    $(".editor", panel).value = text;
    note.className = "save-status";
    note.textContent = `saved ${saved.path}${saved.overwrote ? " (replaced)" : ""}`;
    const data = await api("/playground/api/state");
    fillTemplates(data.templates);
  } catch (error) {
    note.className = "save-status error";
    note.textContent = error.message;
  }
}

// ------------------------------------------------------------------ wiring
for (const panel of panels) {
  const lintSoon = debounce(() => lint(panel), 300);
  $(".editor", panel).addEventListener("input", lintSoon);
  $(".pick", panel).addEventListener("change", (event) => setText(panel, state.templates[event.target.value].text));
  $(".save-button", panel).addEventListener("click", () => save(panel));
}
$("#render").addEventListener("click", renderExamples);
$("#score").addEventListener("click", scoreExamples);
$("#cancel").addEventListener("click", () => state.scoring && state.scoring.controller.abort());
start().catch((error) => status(`could not start: ${error.message}`));
