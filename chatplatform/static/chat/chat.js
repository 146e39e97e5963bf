/* The chat page: one WebSocket, resume from the last seq seen, a live timeline per run. */
(() => {
  "use strict";

  const boot = JSON.parse(document.getElementById("boot").textContent);
  const TERMINAL = new Set(["agent_completed", "agent_error", "agent_cancelled"]);
  const ACTIVE = new Set(["queued", "running", "waiting"]);
  const STATUS_OF = { agent_completed: "completed", agent_cancelled: "cancelled" };
  const MAX_REPLAY = 5000; // further behind than this, reload the thread instead
  const storeKey = `chatplatform:${boot.user_id}:lastSeq`;

  const $ = (id) => document.getElementById(id);
  const els = {
    app: $("app"), conn: $("conn"), timeline: $("timeline"), threads: $("thread-list"),
    title: $("thread-title"), form: $("composer"), agent: $("agent"), message: $("message"),
    notice: $("notice"), options: $("agent-options"), newThread: $("new-thread"),
    counter: $("counter"), stopCurrent: $("stop-current"), jump: $("jump"), status: $("status"),
    drawerToggle: $("drawer-toggle"), nav: $("threads"), scrim: $("scrim"),
  };

  const state = {
    lastSeq: Number(localStorage.getItem(storeKey) || 0),
    ws: null,
    attempt: 0,
    resuming: false,
    held: [],
    rendered: new Set(), // seqs already drawn (live, replayed or from history)
    runs: new Map(), // run_id -> run view
    threads: new Map(),
    current: null, // thread id, null for a new conversation
    pending: new Map(), // request_id of a start -> {text, agent}
    inputs: new Map(), // interrupt_id -> input card view
    resolving: new Map(), // request_id of a resolve_input -> interrupt_id
    requestCounter: 0,
    pingTimer: null,
    follow: true, // keep the newest content in view (false while the user reads above)
  };

  // ---- Markdown, made safe by DOMPurify (never by hand) ---------------------

  if (window.DOMPurify) {
    window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A") {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    });
  }

  function setMarkdown(node, text) {
    if (window.marked && window.DOMPurify) {
      const html = window.marked.parse(text, { gfm: true, breaks: true, async: false });
      node.innerHTML = window.DOMPurify.sanitize(html, { USE_PROFILES: { html: true } });
    } else {
      node.textContent = text;
    }
  }

  // ---- small helpers --------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function timeOf(iso) {
    const when = iso ? new Date(iso) : new Date();
    return { short: when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }), full: when.toLocaleString() };
  }

  function stamp(node, iso) {
    node.title = timeOf(iso).full;
  }

  function announce(text) {
    els.status.textContent = text;
  }

  function showNotice(text) {
    els.notice.textContent = text;
    els.notice.hidden = false;
    clearTimeout(showNotice.timer);
    showNotice.timer = setTimeout(() => { els.notice.hidden = true; }, 8000);
  }

  function shortJson(value, limit = 60) {
    if (value === null || typeof value !== "object") return String(value).slice(0, limit);
    const text = Object.entries(value)
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join(", ");
    return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
  }

  // ---- scrolling: follow the newest content unless the user reads above ----

  function nearBottom() {
    const tl = els.timeline;
    return tl.scrollHeight - tl.scrollTop - tl.clientHeight < 80;
  }

  function scrollToLatest() {
    els.timeline.scrollTop = els.timeline.scrollHeight;
    state.follow = true;
    els.jump.hidden = true;
  }

  function contentAdded() {
    if (state.follow) scrollToLatest();
    else els.jump.hidden = false;
  }

  // ---- connection -------------------------------------------------------

  function setConn(kind, text) {
    els.conn.className = `conn conn-${kind}`;
    els.conn.textContent = text;
  }

  function connect() {
    setConn("connecting", state.attempt ? "Reconnecting…" : "Connecting…");
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}${boot.ws_path}`);
    state.ws = ws;
    ws.onmessage = (msg) => onFrame(JSON.parse(msg.data));
    ws.onclose = (ev) => onClose(ws, ev);
  }

  function onClose(ws, ev) {
    if (state.ws !== ws) return;
    state.ws = null;
    clearInterval(state.pingTimer);
    if (ev.code === 4401) {
      location.href = `/accounts/login/?next=${encodeURIComponent(location.pathname)}`;
      return;
    }
    // About 1 s, growing x1.5 up to 10 s, with +-20% jitter.
    const base = Math.min(10000, 1000 * Math.pow(1.5, state.attempt));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    state.attempt += 1;
    setConn("offline", `Offline, reconnecting in ${Math.ceil(delay / 1000)} s`);
    if (state.attempt === 1) announce("Connection lost; reconnecting.");
    setTimeout(connect, delay);
  }

  function send(frame) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
      showNotice("Not connected; try again in a moment.");
      return false;
    }
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  function onFrame(frame) {
    if (typeof frame.seq === "number") {
      if (state.resuming) state.held.push(frame);
      else applyEvent(frame);
      return;
    }
    const handler = FRAME_HANDLERS[frame.type];
    if (handler) handler(frame);
  }

  const FRAME_HANDLERS = {
    connection_established(hello) {
      if (state.attempt) announce("Connected again.");
      state.attempt = 0;
      setConn("online", "Connected");
      state.pingTimer = setInterval(() => send({ type: "ping" }), 25000);
      loadPendingInputs();
      const behind = hello.last_seq - state.lastSeq;
      if (state.lastSeq === 0 || behind > MAX_REPLAY || behind < 0) {
        // Nothing to catch up from (or too much): start from now, show history by HTTP.
        remember(hello.last_seq);
        if (state.current) loadThread(state.current);
        return;
      }
      state.resuming = true;
      state.held = [];
      send({ type: "resume", request_id: "resume", payload: { after_seq: state.lastSeq } });
    },
    resume_complete(done) {
      // Live events sent before the replay are in it too: apply all in seq order.
      const held = state.held.sort((a, b) => a.seq - b.seq);
      state.resuming = false;
      state.held = [];
      held.forEach(applyEvent);
      if (!done.recovered && state.current) loadThread(state.current);
    },
    run_accepted(reply) {
      const asked = state.pending.get(reply.request_id) || { text: "", agent: "" };
      state.pending.delete(reply.request_id);
      // The draft is sent and taken: now the box may be cleared.
      if (els.message.value.trim() === asked.text) {
        els.message.value = "";
        updateCounter();
      }
      addThread({ id: reply.thread_id, title: asked.text || "Conversation" });
      if (state.current === null) selectThread(reply.thread_id, { load: false });
      const view = runView(reply.run_id, reply.thread_id, asked.agent, "queued");
      if (!view.question.textContent) view.question.textContent = asked.text;
      scrollToLatest();
    },
    input_accepted(reply) {
      state.resolving.delete(reply.request_id);
      const card = state.inputs.get(reply.interrupt_id);
      if (card && !card.done) card.status.textContent = "Sent; waiting for the agent…";
    },
    error(err) {
      const interruptId = state.resolving.get(err.request_id);
      if (interruptId !== undefined) {
        state.resolving.delete(err.request_id);
        const card = state.inputs.get(interruptId);
        if (card) {
          card.status.textContent = err.error.message;
          card.status.className = "input-status input-problem";
          setCardBusy(card, false);
          return;
        }
      }
      const retry = err.error.retry_after ? ` (retry in ${Math.ceil(err.error.retry_after)} s)` : "";
      const kept = state.pending.has(err.request_id) ? " Your message is still in the box." : "";
      state.pending.delete(err.request_id);
      showNotice(`${err.error.message}${retry}${kept}`);
    },
    pong() {},
  };

  function remember(seq) {
    state.lastSeq = seq;
    localStorage.setItem(storeKey, String(seq));
  }

  function applyEvent(event) {
    if (event.seq <= state.lastSeq) return;
    remember(event.seq);
    render(event);
  }

  // ---- threads and the drawer ----------------------------------------------

  function clip(text, limit) {
    const flat = text.replace(/\s+/g, " ").trim();
    return flat.length > limit ? `${flat.slice(0, limit - 1)}…` : flat;
  }

  function setThreadTitle(id, title) {
    const thread = state.threads.get(id);
    if (!thread || !title || thread.title !== "Conversation") return;
    thread.title = clip(title, 120);
    thread.button.textContent = thread.title.slice(0, 60);
    if (state.current === id) els.title.textContent = thread.title;
  }

  function addThread(thread) {
    if (state.threads.has(thread.id)) {
      setThreadTitle(thread.id, thread.title);
      return;
    }
    thread = { ...thread, title: clip(thread.title || "Conversation", 120) };
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = thread.title.slice(0, 60) || "Conversation";
    button.dataset.thread = thread.id;
    button.addEventListener("click", () => { selectThread(thread.id); closeDrawer(); });
    li.append(button);
    els.threads.prepend(li);
    const panel = document.createElement("div");
    panel.className = "thread-panel";
    panel.dataset.thread = thread.id;
    panel.hidden = thread.id !== state.current;
    els.timeline.append(panel);
    state.threads.set(thread.id, { ...thread, button, panel });
  }

  function selectThread(id, { load = true } = {}) {
    state.current = id;
    history.replaceState(null, "", id ? `#${id}` : location.pathname);
    for (const [tid, t] of state.threads) {
      t.panel.hidden = tid !== id;
      t.button.setAttribute("aria-current", tid === id ? "true" : "false");
    }
    els.newPanel.hidden = id !== null;
    els.title.textContent = id ? state.threads.get(id).title : "New conversation";
    if (id && load) loadThread(id);
    else scrollToLatest();
    updateStopCurrent();
  }

  async function loadThread(id) {
    const response = await fetch(`/api/threads/${id}/events/`, { credentials: "same-origin" });
    if (!response.ok) return;
    const body = await response.json();
    body.events.forEach(render);
    if (state.current === id) scrollToLatest(); // a conversation opens at its newest run
  }

  async function loadPendingInputs() {
    // Requests nobody answered yet, wherever they are: still on the page after a reload.
    const response = await fetch("/api/inputs/pending/", { credentials: "same-origin" });
    if (!response.ok) return;
    const body = await response.json();
    body.events.forEach(render);
  }

  function openDrawer() {
    els.app.classList.add("drawer-open");
    els.drawerToggle.setAttribute("aria-expanded", "true");
    els.scrim.hidden = false;
    els.newThread.focus();
  }

  function closeDrawer() {
    if (!els.app.classList.contains("drawer-open")) return;
    els.app.classList.remove("drawer-open");
    els.drawerToggle.setAttribute("aria-expanded", "false");
    els.scrim.hidden = true;
  }

  // ---- runs --------------------------------------------------------------

  function insertBySeq(container, node, seq) {
    node.dataset.seq = String(seq);
    const after = [...container.children].find((c) => Number(c.dataset.seq) > seq);
    container.insertBefore(node, after || null);
  }

  function runView(runId, threadId, agentName, status) {
    let view = state.runs.get(runId);
    if (view) {
      if (agentName && !view.agent.textContent) view.agent.textContent = agentName;
      return view;
    }
    addThread({ id: threadId, title: "Conversation" });
    const card = el("article", "run");
    card.setAttribute("aria-label", `Run ${runId.slice(0, 8)}`);
    const head = el("header", "run-head");
    const agent = el("span", "agent", agentName || "");
    const badge = el("span", "badge");
    const when = el("time", "when");
    const stop = el("button", "stop", "Stop");
    stop.type = "button";
    stop.setAttribute("aria-label", "Stop this run");
    stop.addEventListener("click", () => stopRun(runId));
    head.append(agent, badge, when, stop);
    const question = el("p", "question");
    const steps = el("ol", "steps");
    const streamed = el("div", "streamed markdown");
    const answer = el("div", "answer markdown");
    card.append(head, question, steps, streamed, answer);
    const panel = state.threads.get(threadId).panel;
    card.dataset.seq = String(Number.MAX_SAFE_INTEGER);
    panel.append(card);
    view = { runId, threadId, card, agent, badge, when, stop, question, steps, streamed, answer, deltas: [], tools: new Map(), final: null };
    state.runs.set(runId, view);
    setStatus(view, status);
    return view;
  }

  function stopRun(runId) {
    const view = state.runs.get(runId);
    if (view) view.stop.disabled = true;
    send({ type: "stop_agent", payload: { run_id: runId } });
  }

  function setStatus(view, status) {
    view.status = status;
    view.card.dataset.status = status;
    view.badge.textContent = status;
    view.badge.className = `badge badge-${status}`;
    view.stop.hidden = !ACTIVE.has(status);
    updateStopCurrent();
  }

  function activeRunOfCurrent() {
    let latest = null;
    for (const view of state.runs.values()) {
      if (view.threadId === state.current && ACTIVE.has(view.status)) latest = view;
    }
    return latest;
  }

  function updateStopCurrent() {
    // A Stop that stays in reach (beside Send) while a run of this conversation goes.
    const view = activeRunOfCurrent();
    els.stopCurrent.hidden = view === null;
    els.stopCurrent.disabled = view !== null && view.stop.disabled;
  }

  function render(event) {
    if (state.rendered.has(event.seq)) return;
    state.rendered.add(event.seq);
    const view = runView(event.run_id, event.thread_id, event.agent_name, "running");
    view.agent.textContent = event.agent_name;
    if (Number(view.card.dataset.seq) > event.seq) {
      // Order runs by their first event, wherever the events came from.
      view.card.remove();
      insertBySeq(state.threads.get(event.thread_id).panel, view.card, event.seq);
    }
    const draw = RENDERERS[event.type];
    if (draw) draw(view, event.data, event);
    if (TERMINAL.has(event.type)) {
      const status = STATUS_OF[event.type] || (event.data.error.code === "interrupted" ? "interrupted" : "failed");
      setStatus(view, status);
      if (event.thread_id === state.current) announce(`Run ${status}.`);
    } else if (view.status === "queued") {
      setStatus(view, "running");
    }
    if (event.thread_id === state.current) contentAdded();
  }

  function toolStep(view, data, seq, iso) {
    let step = view.tools.get(data.tool_call_id);
    if (!step) {
      const item = el("li", "step step-tool");
      const details = el("details", "tool");
      const summary = el("summary", "tool-summary");
      const label = el("span", "label", `Tool: ${data.tool_name}`);
      const args = el("code", "tool-args");
      const outcome = el("span", "tool-state", "waiting…");
      summary.append(label, args, outcome);
      const params = el("pre", "params");
      const result = el("pre", "result");
      details.append(summary, params, result);
      item.append(details);
      stamp(item, iso);
      insertBySeq(view.steps, item, seq);
      step = { item, args, outcome, params, result };
      view.tools.set(data.tool_call_id, step);
    }
    return step;
  }

  // ---- input requests (approve a tool call, or answer a question) ---------

  const OUTCOME_TEXT = {
    approved: "Approved", edited: "Approved with changes", rejected: "Rejected",
    answered: "Answered", expired: "Expired: nobody answered in time",
    cancelled: "Cancelled with the run", interrupted: "Interrupted: the server restarted",
  };

  function button(text, label, onClick) {
    const b = el("button", "input-action", text);
    b.type = "button";
    b.setAttribute("aria-label", label);
    b.addEventListener("click", onClick);
    return b;
  }

  function setCardBusy(card, busy) {
    card.section.querySelectorAll("button, textarea").forEach((node) => { node.disabled = busy; });
  }

  function resolveInput(card, decision, extra) {
    state.requestCounter += 1;
    const requestId = `in${Date.now()}-${state.requestCounter}`;
    const payload = { interrupt_id: card.id, decision, ...extra };
    if (send({ type: "resolve_input", request_id: requestId, payload })) {
      state.resolving.set(requestId, card.id);
      card.status.className = "input-status";
      card.status.textContent = "Sending…";
      setCardBusy(card, true);
    }
  }

  function answerValue(schema, text) {
    // A schema that wants more than a string gets the text read as JSON.
    if (!schema || schema.type === "string") return text;
    try { return JSON.parse(text); } catch (e) { return text; }
  }

  function inputCard(view, data, event) {
    const tool = data.kind === "tool_approval";
    const section = el("section", `input-card input-${data.kind}`);
    const heading = tool ? `Approval needed: ${data.tool_name}` : "The agent asks you";
    section.setAttribute("role", "group");
    section.setAttribute("aria-label", heading);
    section.append(el("h3", "input-heading", heading), el("p", "input-message", data.message));
    const card = { id: data.interrupt_id, section, done: false, threadId: event.thread_id };
    const controls = el("div", "input-controls");
    if (tool) {
      const params = el("pre", "params", JSON.stringify(data.parameters, null, 2));
      const editor = el("textarea", "input-edit");
      editor.value = JSON.stringify(data.parameters, null, 2);
      editor.rows = 4;
      editor.hidden = true;
      editor.id = `edit-${data.interrupt_id}`;
      const editLabel = el("label", "visually-hidden", `Parameters for ${data.tool_name} (JSON)`);
      editLabel.htmlFor = editor.id;
      const save = button("Run with these", `Run ${data.tool_name} with the edited parameters`, () => {
        let parameters;
        try { parameters = JSON.parse(editor.value); } catch (e) {
          card.status.className = "input-status input-problem";
          card.status.textContent = `Not valid JSON: ${e.message}`;
          editor.focus();
          return;
        }
        resolveInput(card, "edit", { parameters });
      });
      save.hidden = true;
      controls.append(
        button("Approve", `Approve ${data.tool_name}`, () => resolveInput(card, "approve", {})),
        button("Reject", `Reject ${data.tool_name}`, () => resolveInput(card, "reject", {})),
        button("Edit", `Edit the parameters of ${data.tool_name}`, () => {
          editor.hidden = false;
          save.hidden = false;
          editor.focus();
        }),
      );
      section.append(params, editLabel, editor, save);
    } else {
      const box = el("textarea", "input-answer");
      box.id = `answer-${data.interrupt_id}`;
      box.rows = 2;
      const label = el("label", "input-label", "Your answer");
      label.htmlFor = box.id;
      if (data.response_schema) box.placeholder = JSON.stringify(data.response_schema);
      const submitAnswer = () => {
        if (!box.value.trim()) { box.focus(); return; }
        resolveInput(card, "answer", { answer: answerValue(data.response_schema, box.value.trim()) });
      };
      box.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); submitAnswer(); }
      });
      section.append(label, box);
      controls.append(
        button("Send answer", "Send the answer", submitAnswer),
        button("Decline", "Decline to answer", () => resolveInput(card, "reject", {})),
      );
    }
    card.status = el("p", "input-status");
    section.append(controls, card.status, el("p", "input-expiry", `Answer by ${timeOf(data.expires_at).short}`));
    const item = el("li", "step step-input");
    item.append(section);
    stamp(item, event.timestamp);
    insertBySeq(view.steps, item, event.seq);
    state.inputs.set(card.id, card);
    markThread(event.thread_id);
    return card;
  }

  function markThread(threadId) {
    const thread = state.threads.get(threadId);
    if (!thread) return;
    const waiting = [...state.inputs.values()].some((c) => !c.done && c.threadId === threadId);
    thread.button.classList.toggle("needs-input", waiting);
    thread.button.title = waiting ? "Waiting for your answer" : "";
  }

  // ---- events -------------------------------------------------------------

  function showStreamed(view) {
    const text = view.deltas.map((d) => d[1]).join("");
    // Streamed text stays after the run ends, unless the answer is that same text.
    const same = view.final !== null && view.final.trim() === text.trim();
    view.streamed.hidden = !text || same;
    if (!view.streamed.hidden) setMarkdown(view.streamed, text);
  }

  const RENDERERS = {
    agent_started(view, data, event) {
      view.question.textContent = data.message;
      view.when.textContent = timeOf(event.timestamp).short;
      view.when.dateTime = event.timestamp;
      stamp(view.when, event.timestamp);
      setThreadTitle(event.thread_id, data.message);
    },
    agent_thinking(view, data, event) {
      const step = el("li", "step step-thinking");
      const progress = el("progress");
      progress.max = 100;
      progress.value = data.progress;
      progress.setAttribute("aria-label", `Progress ${data.progress}%`);
      step.append(el("span", "label", `Thinking (step ${data.step})`), el("span", "reasoning", data.reasoning), progress);
      stamp(step, event.timestamp);
      insertBySeq(view.steps, step, event.seq);
    },
    tool_executing(view, data, event) {
      const step = toolStep(view, data, event.seq, event.timestamp);
      step.args.textContent = shortJson(data.parameters);
      step.params.textContent = JSON.stringify(data.parameters, null, 2);
      step.outcome.textContent = "running…";
    },
    tool_completed(view, data, event) {
      const step = toolStep(view, data, event.seq, event.timestamp);
      step.item.classList.add("ok");
      step.outcome.textContent = `✓ ${data.duration_ms} ms`;
      step.result.textContent = JSON.stringify(data.result, null, 2);
    },
    tool_error(view, data, event) {
      const step = toolStep(view, data, event.seq, event.timestamp);
      step.item.classList.add("failed");
      step.outcome.textContent = `✗ ${data.duration_ms} ms`;
      step.result.textContent = `Error: ${data.error}`;
      step.result.classList.add("outcome", "failed");
    },
    partial_result(view, data, event) {
      view.deltas.push([event.seq, data.delta]);
      view.deltas.sort((a, b) => a[0] - b[0]);
      showStreamed(view);
    },
    input_requested(view, data, event) {
      inputCard(view, data, event);
      setStatus(view, "waiting");
      if (event.thread_id === state.current) announce(data.kind === "tool_approval" ? `Approval needed: ${data.tool_name}.` : "The agent asks you a question.");
    },
    input_resolved(view, data) {
      const card = state.inputs.get(data.interrupt_id);
      if (!card || card.done) return;
      card.done = true;
      card.section.classList.add("input-done");
      card.section.querySelectorAll("button, textarea, label").forEach((node) => node.remove());
      const answer = data.answer === undefined ? "" : `: ${typeof data.answer === "string" ? data.answer : JSON.stringify(data.answer)}`;
      card.status.className = `input-status input-${data.outcome}`;
      card.status.textContent = `${OUTCOME_TEXT[data.outcome] || data.outcome}${answer}`;
      markThread(card.threadId);
      if (view.status === "waiting") setStatus(view, "running");
    },
    agent_completed(view, data) {
      view.final = data.result;
      setMarkdown(view.answer, data.result);
      view.answer.classList.add("final");
      showStreamed(view);
      if (data.usage) {
        view.card.append(el("p", "usage", `Tokens: ${data.usage.input_tokens} in, ${data.usage.output_tokens} out`));
      }
    },
    agent_error(view, data) {
      view.card.append(el("p", "run-error", `Error (${data.error.code}): ${data.error.message}`));
    },
    agent_cancelled(view, data) {
      view.card.append(el("p", "run-cancelled", `Cancelled: ${data.reason}`));
    },
  };

  // ---- composer -----------------------------------------------------------

  function optionFields(agentName) {
    // Each agent's own options, from the JSON Schema the server gives for it.
    els.options.replaceChildren();
    const agent = boot.agents.find((a) => a.name === agentName);
    const properties = (agent && agent.options && agent.options.properties) || {};
    for (const [name, spec] of Object.entries(properties)) {
      const id = `opt-${name}`;
      const label = el("label", null, spec.title || name);
      label.htmlFor = id;
      let input;
      if (spec.type === "integer" || spec.type === "number") {
        input = el("input");
        input.type = "number";
        if (spec.minimum !== undefined) input.min = String(spec.minimum);
        if (spec.maximum !== undefined) input.max = String(spec.maximum);
        if (spec.default !== undefined) input.value = String(spec.default);
      } else if (spec.type === "boolean") {
        input = el("input");
        input.type = "checkbox";
        input.checked = Boolean(spec.default);
      } else if (spec.type === "string") {
        input = el("input");
        input.type = "text";
        if (spec.maxLength) input.maxLength = spec.maxLength;
      } else {
        continue; // objects (an answer's schema) are for scripts, not for this form
      }
      input.id = id;
      input.dataset.option = name;
      input.dataset.kind = spec.type;
      const field = el("span", `option option-${spec.type}`);
      if (spec.type === "boolean") field.append(input, label);
      else field.append(label, input);
      els.options.append(field);
    }
  }

  function collectOptions() {
    const options = {};
    for (const input of els.options.querySelectorAll("[data-option]")) {
      const name = input.dataset.option;
      if (input.dataset.kind === "boolean") {
        if (input.checked) options[name] = true;
      } else if (input.dataset.kind === "string") {
        if (input.value.trim()) options[name] = input.value.trim();
      } else if (input.value !== "") {
        options[name] = Number(input.value);
      }
    }
    return options;
  }

  function updateCounter() {
    const length = els.message.value.length;
    els.counter.textContent = `${length} / ${boot.max_message_chars}`;
    els.counter.classList.toggle("over", length > boot.max_message_chars);
  }

  function submit(ev) {
    ev.preventDefault();
    const text = els.message.value.trim();
    if (!text) {
      showNotice("Type a message first.");
      els.message.focus();
      return;
    }
    if (text.length > boot.max_message_chars) {
      showNotice(`The message is longer than ${boot.max_message_chars} characters; shorten it first.`);
      return;
    }
    const agent = els.agent.value;
    state.requestCounter += 1;
    const requestId = `r${Date.now()}-${state.requestCounter}`;
    const payload = { agent, message: text, thread_id: state.current, options: collectOptions() };
    if (send({ type: "start_agent", request_id: requestId, payload })) {
      // The draft stays until the run is accepted: a refusal loses nothing.
      state.pending.set(requestId, { text, agent });
      state.follow = true;
      els.message.focus();
    }
  }

  function init() {
    for (const agent of boot.agents) {
      const option = el("option", null, agent.name);
      option.value = agent.name;
      option.title = agent.description;
      option.selected = agent.name === boot.default_agent;
      els.agent.append(option);
    }
    els.agent.addEventListener("change", () => optionFields(els.agent.value));
    optionFields(els.agent.value);
    els.newPanel = el("div", "thread-panel empty");
    els.newPanel.append(el("p", "hint", "Start a conversation: pick an agent and send a message."));
    els.timeline.append(els.newPanel);
    [...boot.threads].reverse().forEach(addThread);
    els.form.addEventListener("submit", submit);
    els.message.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey) submit(ev);
    });
    els.message.addEventListener("input", updateCounter);
    els.newThread.addEventListener("click", () => { selectThread(null); closeDrawer(); els.message.focus(); });
    els.stopCurrent.addEventListener("click", () => {
      const view = activeRunOfCurrent();
      if (view) { stopRun(view.runId); updateStopCurrent(); }
    });
    els.timeline.addEventListener("scroll", () => {
      state.follow = nearBottom();
      if (state.follow) els.jump.hidden = true;
    });
    els.jump.addEventListener("click", scrollToLatest);
    els.drawerToggle.addEventListener("click", () => {
      if (els.app.classList.contains("drawer-open")) closeDrawer();
      else openDrawer();
    });
    els.scrim.addEventListener("click", closeDrawer);
    document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeDrawer(); });
    const fromHash = location.hash.slice(1);
    selectThread(state.threads.has(fromHash) ? fromHash : (boot.threads[0] ? boot.threads[0].id : null));
    updateCounter();
    els.message.focus();
    connect();
    // For tests and debugging: the page's view of the stream.
    window.chatplatform = { state };
  }

  init();
})();
