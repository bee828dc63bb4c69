// The moderator console (/moderate): every stage at once. One queue for all stages (held
// first messages and filtered lines, reports, questions waiting for approval) with
// keyboard shortcuts; per stage its chat, settings, Q&A, polls and stream health; polls
// prepared and opened on several stages, with hall and online results split.

import { byId, clock, h, replace } from "./dom.js";
import { errorText, results } from "./engage.js";
import { lang, onLangChange, t } from "./i18n.js";
import { Realtime } from "./realtime.js";
import { claims, forget, isStaff, token } from "./session.js";
import { connectionBadge, startPage } from "./shell.js";

const TIMEOUT_SECONDS = 300;

class Stage {
  constructor(stage) {
    this.stage = stage;
    this.topic = `stage:${stage.id}`;
    this.held = new Map();
    this.reports = new Map();
    this.questions = new Map();
    this.chat = new Map();
    this.settings = { slowmode: 0, hold_first: false };
    this.stream = null;
    this.health = null;
    this.problems = [];
    this.viewers = 0;
  }
}

class Console {
  constructor(rt, programme, main) {
    this.rt = rt;
    this.programme = programme;
    this.main = main;
    this.stages = new Map(programme.stages.map((s) => [s.id, new Stage(s)]));
    this.polls = new Map();
    this.selected = programme.stages[0].id;
    this.status = h("p", { class: "form-note", role: "status", id: "mod-status" });
    this.queueEl = h("ol", { class: "queue", id: "queue", "aria-labelledby": "queue-h" });
    this.tabsEl = h("div", { class: "tabs", role: "toolbar", "aria-labelledby": "stages-h" });
    this.stageEl = h("div", { class: "stage-detail" });
    this.pollsEl = h("div", { class: "mod-polls" });
    this.healthEl = h("ul", { class: "health", "aria-labelledby": "health-h" });
    this.pollForm = this.buildPollForm();
    this.dirty = false;
    for (const s of this.stages.values()) {
      rt.subscribe(`mod:${s.topic}`, (kind, data) => this.onMod(s, kind, data));
      rt.subscribe(s.topic, (kind, data) => this.onTopic(s, kind, data));
    }
    this.render();
  }

  // --- incoming ------------------------------------------------------------------------

  onMod(s, kind, data) {
    if (kind === "error") {
      this.status.textContent = `${s.stage.title}: ${errorText(data)}`;
      return;
    }
    if (kind === "snapshot") {
      const snap = data.snapshot;
      s.held = new Map(snap.held.map((m) => [m.msg_id, m]));
      s.questions = new Map(snap.questions.map((q) => [q.question_id, q]));
      for (const p of snap.polls) this.polls.set(p.poll_id, { ...this.polls.get(p.poll_id), ...p });
      if (!data.first && !data.reset) {
        for (const push of data.missed) if (push.type === "chat.reported") this.onMod(s, "push", push);
      }
      return this.later();
    }
    const m = data;
    switch (m.type) {
      case "chat.held": s.held.set(m.msg_id, m); break;
      case "chat.approved": s.held.delete(m.msg_id); break;
      case "chat.deleted": s.held.delete(m.msg_id); s.reports.delete(m.msg_id); break;
      case "chat.reported": s.reports.set(m.msg_id, m); break;
      case "chat.sanction": this.status.textContent = t(`mod.sanction.${m.action}`, { user: m.user_id }); break;
      case "qa.question": s.questions.set(m.question_id, m); break;
      case "qa.updated": {
        const q = s.questions.get(m.question_id);
        if (q) Object.assign(q, { upvotes: m.upvotes, state: m.state });
        if (q && !["pending", "approved"].includes(m.state)) s.questions.delete(m.question_id);
        break;
      }
      case "poll.opened": this.polls.set(m.poll_id, { ...this.polls.get(m.poll_id), ...m }); break;
      case "poll.results": {
        const p = this.polls.get(m.poll_id);
        if (p) p.results = { counts: m.counts, voters: m.voters, mean: m.mean, wall: m.wall, by_origin: m.by_origin, answers: m.answers };
        break;
      }
      case "poll.closed": {
        const p = this.polls.get(m.poll_id);
        if (p) Object.assign(p, { state: "closed", results: m.results || p.results });
        break;
      }
      case "stream.state": s.stream = m; break;
      case "stream.health": s.health = m; break;
      case "stream.alert": s.problems = m.problems; break;
      default: return;
    }
    this.later();
  }

  onTopic(s, kind, data) {
    if (kind === "error") return;
    if (kind === "snapshot") {
      const snap = data.snapshot;
      s.settings = snap.settings;
      s.viewers = snap.viewers;
      if (snap.stream) s.stream = { ...s.stream, ...snap.stream };
      if (data.first || data.reset) s.chat = new Map(snap.chat.map((m) => [m.msg_id, m]));
      else for (const push of data.missed) this.onTopic(s, "push", push);
      return this.later();
    }
    const m = data;
    if (m.type === "chat.message") s.chat.set(m.msg_id, m);
    else if (m.type === "chat.deleted") s.chat.delete(m.msg_id);
    else if (m.type === "chat.settings") s.settings = { slowmode: m.slowmode, hold_first: m.hold_first };
    else if (m.type === "presence.count") s.viewers = m.viewers;
    else return;
    while (s.chat.size > 100) s.chat.delete(s.chat.keys().next().value);
    this.later();
  }

  // Many pushes arrive together (a snapshot per topic on connect): draw once per frame.
  later() {
    if (this.dirty) return;
    this.dirty = true;
    requestAnimationFrame(() => {
      this.dirty = false;
      this.render();
    });
  }

  // --- actions -------------------------------------------------------------------------

  async act(type, fields, doneKey) {
    try {
      await this.rt.request(type, fields);
      if (doneKey) this.status.textContent = t(doneKey);
      return true;
    } catch (error) {
      this.status.textContent = errorText(error);
      return false;
    }
  }

  // --- drawing -------------------------------------------------------------------------

  render() {
    // Keep the keyboard where it was: redraws replace the lists.
    const active = document.activeElement;
    const focusKey = active?.dataset?.key;
    const focusAction = active?.dataset?.action;
    if (!this.main.contains(this.queueEl)) this.layout();
    this.renderQueue();
    this.renderTabs();
    this.renderStage();
    this.renderPolls();
    this.renderHealth();
    if (focusKey) {
      const sel = `[data-key="${CSS.escape(focusKey)}"]${focusAction ? `[data-action="${CSS.escape(focusAction)}"]` : ""}`;
      const el = this.main.querySelector(sel) || this.main.querySelector(`[data-key="${CSS.escape(focusKey)}"]`);
      if (el) el.focus();
    }
  }

  layout() {
    replace(this.main,
      h("h1", { text: t("mod.title") }),
      this.status,
      h("div", { class: "console" },
        h("section", { class: "panel", "aria-labelledby": "queue-h" },
          h("h2", { id: "queue-h", text: t("mod.queue") }),
          h("p", { class: "hint" }, t("mod.shortcuts"), " ",
            h("kbd", { text: "A" }), ` ${t("mod.approve")} · `,
            h("kbd", { text: "D" }), ` ${t("mod.delete")} · `,
            h("kbd", { text: "T" }), ` ${t("mod.timeout")} · `,
            h("kbd", { text: "B" }), ` ${t("mod.ban")}`),
          this.queueEl),
        h("section", { class: "panel", "aria-labelledby": "stages-h" },
          h("h2", { id: "stages-h", text: t("mod.stages") }),
          this.tabsEl, this.stageEl)),
      h("section", { class: "panel", "aria-labelledby": "polls-h" },
        h("h2", { id: "polls-h", text: t("mod.polls") }), this.pollForm.root, this.pollsEl),
      h("section", { class: "panel", "aria-labelledby": "health-h" },
        h("h2", { id: "health-h", text: t("mod.health") }), this.healthEl));
  }

  renderQueue() {
    const items = [];
    for (const s of this.stages.values()) {
      for (const m of s.held.values()) items.push(this.heldItem(s, m));
      for (const r of s.reports.values()) items.push(this.reportItem(s, r));
      for (const q of s.questions.values()) if (q.state === "pending") items.push(this.questionItem(s, q));
    }
    replace(this.queueEl, items.length ? items : h("li", { class: "empty", text: t("mod.queue_empty") }));
  }

  shortcuts(li, handlers) {
    li.tabIndex = 0;
    li.addEventListener("keydown", (event) => {
      if (event.target !== li || event.altKey || event.ctrlKey || event.metaKey) return;
      const fn = handlers[event.key.toLowerCase()];
      if (fn) {
        event.preventDefault();
        // Focus moves to the next item, so a moderator can work down the queue.
        const next = li.nextElementSibling || li.previousElementSibling;
        fn().then(() => next?.dataset?.key && this.main.querySelector(`li[data-key="${CSS.escape(next.dataset.key)}"]`)?.focus());
      }
    });
    return li;
  }

  author(m) {
    return m.author ? m.author.name : t("qa.anonymous_author");
  }

  heldItem(s, m) {
    const approve = () => this.act("chat.approve", { topic: s.topic, msg_id: m.msg_id }, "mod.done.approved");
    const del = () => this.act("chat.delete", { topic: s.topic, msg_id: m.msg_id }, "mod.done.deleted");
    const timeout = () => this.act("chat.timeout", { topic: s.topic, user_id: m.author.id, seconds: TIMEOUT_SECONDS }, "mod.done.timeout");
    const ban = () => this.act("chat.ban", { topic: s.topic, user_id: m.author.id }, "mod.done.ban");
    const key = `held-${m.msg_id}`;
    const li = h("li", { "data-key": key, "aria-label": t("mod.held_label", { name: this.author(m), stage: s.stage.title }) },
      h("p", { class: "meta", text: `${s.stage.title} · ${t(`mod.reason.${m.reason || "first_message"}`)} · ${clock(m.ts, lang())}` }),
      h("p", {}, h("strong", { text: `${this.author(m)}: ` }), m.text),
      this.buttons(key, [["approve", "mod.approve", approve], ["delete", "mod.delete", del], ["timeout", "mod.timeout", timeout], ["ban", "mod.ban", ban]]));
    return this.shortcuts(li, { a: approve, d: del, t: timeout, b: ban });
  }

  reportItem(s, r) {
    const del = () => this.act("chat.delete", { topic: s.topic, msg_id: r.msg_id }, "mod.done.deleted");
    const keep = async () => {
      s.reports.delete(r.msg_id);
      this.render();
      return true;
    };
    const timeout = () => this.act("chat.timeout", { topic: s.topic, user_id: r.author.id, seconds: TIMEOUT_SECONDS }, "mod.done.timeout");
    const ban = () => this.act("chat.ban", { topic: s.topic, user_id: r.author.id }, "mod.done.ban");
    const key = `report-${r.msg_id}`;
    const li = h("li", { class: "report", "data-key": key, "aria-label": t("mod.report_label", { name: r.author.name, stage: s.stage.title }) },
      h("p", { class: "meta", text: `${s.stage.title} · ${t("mod.reported_by", { name: r.reporter.name })}${r.reason ? ` · ${r.reason}` : ""}` }),
      h("p", {}, h("strong", { text: `${r.author.name}: ` }), r.text),
      this.buttons(key, [["approve", "mod.keep", keep], ["delete", "mod.delete", del], ["timeout", "mod.timeout", timeout], ["ban", "mod.ban", ban]]));
    return this.shortcuts(li, { a: keep, d: del, t: timeout, b: ban });
  }

  questionItem(s, q) {
    const approve = () => this.act("qa.approve", { question_id: q.question_id }, "mod.done.q_approved");
    const dismiss = () => this.act("qa.dismiss", { question_id: q.question_id }, "mod.done.q_dismissed");
    const key = `q-${q.question_id}`;
    const li = h("li", { class: "question-item", "data-key": key, "aria-label": t("mod.question_label", { stage: s.stage.title }) },
      h("p", { class: "meta", text: `${s.stage.title} · ${t("mod.question")} · ${this.author(q)}` }),
      h("p", { text: q.text }),
      this.buttons(key, [["approve", "mod.approve", approve], ["delete", "mod.dismiss", dismiss]]));
    return this.shortcuts(li, { a: approve, d: dismiss });
  }

  buttons(key, list) {
    return h("div", { class: "actions" }, list.map(([action, label, fn]) =>
      h("button", { type: "button", class: action === "delete" || action === "ban" ? "danger" : action === "approve" ? "" : "secondary", "data-key": key, "data-action": action, text: t(label), onclick: fn })));
  }

  renderTabs() {
    replace(this.tabsEl, [...this.stages.values()].map((s) => {
      const waiting = s.held.size + s.reports.size + [...s.questions.values()].filter((q) => q.state === "pending").length;
      return h("button", {
        type: "button", "aria-pressed": String(s.stage.id === this.selected), "data-key": `tab-${s.stage.id}`,
        onclick: () => { this.selected = s.stage.id; this.render(); },
      }, s.stage.title, h("span", { class: "count", "aria-label": waiting ? t("mod.waiting", { n: waiting }) : false, text: waiting || "" }));
    }));
  }

  renderStage() {
    const s = this.stages.get(this.selected);
    const id = s.stage.id;
    const chat = [...s.chat.values()].slice(-30).reverse();
    const approved = [...s.questions.values()].filter((q) => q.state === "approved").sort((a, b) => b.upvotes - a.upvotes);
    const slow = h("select", { id: `slow-${id}`, "data-key": `slow-${id}` },
      [0, 5, 10, 30, 60, 120].map((n) => h("option", { value: String(n), selected: n === s.settings.slowmode, text: n ? t("mod.slow_n", { n }) : t("mod.slow_off") })));
    slow.addEventListener("change", () => this.act("chat.slowmode", { topic: s.topic, seconds: Number(slow.value) }, "mod.done.settings"));
    const hold = h("input", { type: "checkbox", id: `hold-${id}`, "data-key": `hold-${id}`, checked: s.settings.hold_first });
    hold.addEventListener("change", () => this.act("chat.hold", { topic: s.topic, enabled: hold.checked }, "mod.done.settings"));
    replace(this.stageEl,
      h("h3", { text: s.stage.title }),
      h("p", { class: "meta", text: `${s.stream ? t(`player.state.${s.stream.state}`) : t("stage.kind." + s.stage.kind)} · ${t("stage.viewers", { n: s.viewers })}` }),
      h("div", { class: "row" },
        h("div", {}, h("label", { for: `slow-${id}`, text: t("mod.slowmode") }), slow),
        h("div", { class: "choice" }, hold, h("label", { for: `hold-${id}`, text: t("mod.hold_first") }))),
      h("h4", { text: t("mod.questions") }),
      approved.length ? h("ol", { class: "queue" }, approved.map((q) => {
        const others = approved.filter((o) => o.question_id !== q.question_id);
        const into = h("select", { "aria-label": t("mod.merge_into"), "data-key": `merge-${q.question_id}` },
          h("option", { value: "", text: t("mod.merge_into") }),
          others.map((o) => h("option", { value: o.question_id, text: o.text.slice(0, 60) })));
        into.addEventListener("change", () => into.value && this.act("qa.merge", { question_id: q.question_id, into: into.value }, "mod.done.merged"));
        return h("li", { class: "question-item" },
          h("p", {}, h("strong", { text: `▲ ${q.upvotes} ` }), q.text),
          h("div", { class: "actions" },
            h("button", { type: "button", "data-key": `qa-${q.question_id}`, "data-action": "answer", text: t("mod.answered"), onclick: () => this.act("qa.answer", { question_id: q.question_id }, "mod.done.answered") }),
            h("button", { type: "button", class: "secondary", text: t("mod.dismiss"), onclick: () => this.act("qa.dismiss", { question_id: q.question_id }, "mod.done.q_dismissed") }),
            others.length ? into : null));
      })) : h("p", { class: "empty", text: t("qa.none") }),
      h("h4", { text: t("mod.chat") }),
      chat.length ? h("ol", { class: "queue" }, chat.map((m) => h("li", { class: "question-item" },
        h("p", { class: "meta", text: `${m.author.name} · ${clock(m.ts, lang())}` }),
        h("p", { text: m.text }),
        m.author.role === "viewer" ? this.buttons(`chat-${m.msg_id}`, [
          ["delete", "mod.delete", () => this.act("chat.delete", { topic: s.topic, msg_id: m.msg_id }, "mod.done.deleted")],
          ["timeout", "mod.timeout", () => this.act("chat.timeout", { topic: s.topic, user_id: m.author.id, seconds: TIMEOUT_SECONDS }, "mod.done.timeout")],
          ["ban", "mod.ban", () => this.act("chat.ban", { topic: s.topic, user_id: m.author.id }, "mod.done.ban")],
        ]) : null))) : h("p", { class: "empty", text: t("mod.chat_empty") }));
  }

  buildPollForm() {
    const question = h("input", { id: "poll-q", maxlength: "300", autocomplete: "off" });
    const kind = h("select", { id: "poll-kind" },
      ["single", "multi", "scale", "wordcloud", "open"].map((k) => h("option", { value: k, "data-k": `poll.kind.${k}` })));
    const options = h("textarea", { id: "poll-options", rows: "3" });
    const visibility = h("select", { id: "poll-vis" },
      ["live", "after_close", "never"].map((v) => h("option", { value: v, "data-k": `polls.vis.${v}` })));
    const stagesBox = h("fieldset", { class: "stage-picks" }, h("legend", { "data-k": "mod.poll_stages" }),
      this.programme.stages.map((s) => h("div", { class: "choice" },
        h("input", { type: "checkbox", id: `ps-${s.id}`, value: s.id, name: "poll-stage" }),
        h("label", { for: `ps-${s.id}`, text: s.title }))));
    const note = h("p", { class: "form-note", role: "status" });
    const submit = async (open) => {
      const topics = [...stagesBox.querySelectorAll("input:checked")].map((i) => `stage:${i.value}`);
      if (!topics.length || !question.value.trim()) {
        note.textContent = t("mod.poll_missing");
        return;
      }
      const fields = { topics, question: question.value.trim(), kind: kind.value, visibility: visibility.value, open };
      if (kind.value === "single" || kind.value === "multi") {
        fields.options = options.value.split("\n").map((o) => o.trim()).filter(Boolean);
      }
      try {
        const poll = await this.rt.request("poll.create", fields);
        this.polls.set(poll.poll_id, { ...this.polls.get(poll.poll_id), ...poll });
        note.textContent = t(open ? "mod.poll_opened" : "mod.poll_prepared");
        question.value = "";
        options.value = "";
        this.render();
      } catch (error) {
        note.textContent = errorText(error);
      }
    };
    const root = h("form", { class: "poll-form", onsubmit: (e) => { e.preventDefault(); submit(true); } },
      h("label", { for: "poll-q", "data-k": "mod.poll_question" }), question,
      h("div", { class: "row" },
        h("div", {}, h("label", { for: "poll-kind", "data-k": "mod.poll_kind" }), kind),
        h("div", {}, h("label", { for: "poll-vis", "data-k": "mod.poll_visibility" }), visibility)),
      h("label", { for: "poll-options", "data-k": "mod.poll_options" }), options,
      stagesBox,
      h("div", { class: "actions" },
        h("button", { type: "submit", "data-k": "mod.poll_open_now" }),
        h("button", { type: "button", class: "secondary", "data-k": "mod.poll_prepare", onclick: () => submit(false) })),
      note);
    return { root };
  }

  renderPolls() {
    for (const el of this.pollForm.root.querySelectorAll("[data-k]")) el.textContent = t(el.dataset.k);
    const polls = [...this.polls.values()].reverse();
    replace(this.pollsEl, polls.length ? polls.map((p) => {
      const stages = p.topics.map((tp) => this.stages.get(tp.split(":")[1])?.stage.title || tp).join(", ");
      const r = p.results;
      return h("article", { class: "poll", "data-poll": p.poll_id },
        h("h3", { text: p.question }),
        h("p", { class: "meta", text: `${t(`polls.state.${p.state}`)} · ${stages}` }),
        h("div", { class: "actions" },
          p.state === "draft" ? h("button", { type: "button", text: t("mod.poll_open"), onclick: () => this.act("poll.open", { poll_id: p.poll_id }, "mod.poll_opened") }) : null,
          p.state === "open" ? h("button", { type: "button", class: "danger", text: t("mod.poll_close"), onclick: () => this.act("poll.close", { poll_id: p.poll_id }, "mod.poll_closed") }) : null),
        r ? results(p, r) : null,
        r?.by_origin ? splitTable(p, r.by_origin, this.stages) : null,
        p.kind === "open" && r?.answers?.length ? h("div", {},
          h("h4", { text: t("mod.answers") }),
          h("ul", { class: "queue" }, r.answers.map((a) => h("li", { class: "question-item" },
            h("p", { text: a.text }),
            h("div", { class: "actions" }, h("button", {
              type: "button", class: "secondary", disabled: a.shown, "data-key": `wall-${a.answer_id}`,
              text: a.shown ? t("mod.on_wall") : t("mod.to_wall"),
              onclick: async () => {
                if (await this.act("poll.show", { poll_id: p.poll_id, answer_id: a.answer_id }, "mod.done.wall")) {
                  a.shown = true;
                  this.render();
                }
              },
            })))))) : null);
    }) : h("p", { class: "empty", text: t("polls.none") }));
  }

  renderHealth() {
    replace(this.healthEl, [...this.stages.values()].filter((s) => s.stage.kind !== "film").map((s) => {
      const hl = s.health;
      const v = hl?.video;
      const a = hl?.audio;
      return h("li", {},
        h("strong", { text: s.stage.title }),
        h("br"),
        s.stream ? t(`player.state.${s.stream.state}`) : t("player.state.scheduled"),
        v?.codec ? h("br") : null,
        v?.codec ? `${v.codec} ${Math.round((v.bitrate_bps || 0) / 1000)} kbit/s · ${v.fps ?? 0} fps` : null,
        a?.codec ? h("br") : null,
        a?.codec ? `${a.codec} ${Math.round((a.bitrate_bps || 0) / 1000)} kbit/s` : null,
        s.problems.length ? h("p", { class: "alert", text: s.problems.map((p) => t(`health.${p}`)).join(", ") }) : null);
    }));
  }
}

function splitTable(poll, byOrigin, stages) {
  const keys = poll.kind === "single" || poll.kind === "multi" ? poll.options.map((o) => [o.id, o.label]) : null;
  const origins = Object.keys(byOrigin);
  const name = (origin) => {
    const [kind, id] = origin.split(":");
    const title = stages.get(id)?.stage.title || id;
    return kind === "hall" ? t("mod.origin_hall", { stage: title }) : t("mod.origin_online", { stage: title });
  };
  return h("div", { class: "split" },
    h("table", {},
      h("caption", { class: "visually-hidden", text: t("mod.split_caption") }),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: t("mod.origin") }), h("th", { scope: "col", text: t("polls.voters_h") }),
        keys ? keys.map(([, label]) => h("th", { scope: "col", text: label })) : null)),
      h("tbody", {}, origins.map((o) => h("tr", { "data-origin": o },
        h("th", { scope: "row", text: name(o) }),
        h("td", { text: String(byOrigin[o].voters) }),
        keys ? keys.map(([id]) => h("td", { text: String(byOrigin[o].counts[id] ?? 0) })) : null)))));
}

async function main() {
  const { programme } = await startPage(() => t("mod.title"));
  const main = byId("main");
  if (!isStaff(claims())) {
    replace(main, h("section", { class: "panel" },
      h("h1", { text: t("mod.title") }),
      h("p", { text: t(claims() ? "staff.not_staff" : "staff.need_link") })));
    return;
  }
  const rt = new Realtime(token);
  connectionBadge(rt, byId("conn"), () => { forget(); location.reload(); });
  const signout = byId("signout");
  signout.hidden = false;
  signout.addEventListener("click", () => { rt.close(); forget(); location.assign("/"); });
  const console_ = new Console(rt, programme, main);
  onLangChange(() => { console_.layout(); console_.render(); });
  rt.connect();
}

main().catch((error) => {
  const main = document.getElementById("main");
  if (main) replace(main, h("p", { class: "problem", role: "alert", text: `${error}` }));
});
