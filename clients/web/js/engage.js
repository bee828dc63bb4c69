// Taking part on a topic: chat, polls, Q&A and reactions, for an attendee.
// Each view keeps its own state and redraws from it; people's text goes in as text.

import { append, clock, h, replace } from "./dom.js";
import { lang, t } from "./i18n.js";

const EMOJI = ["👏", "❤️", "😂", "😮", "👍", "🎉"];
const EMOJI_KEYS = ["clap", "heart", "laugh", "wow", "thumbs", "party"];

/** The message for a refused request, by the protocol's error code. */
export function errorText(error) {
  const known = ["offline", "rate_limited", "muted", "banned", "forbidden", "closed", "conflict", "invalid", "not_found"];
  if (error.code === "rate_limited" || error.code === "invalid") {
    // The server's sentence names the limit or the field ("slow mode: one message every 10 s").
    return `${t(`error.${error.code}`)} (${error.message})`;
  }
  return known.includes(error.code) ? t(`error.${error.code}`) : t("error.other");
}

export class ChatView {
  constructor(rt, topic) {
    this.rt = rt;
    this.topic = topic;
    this.lines = new Map(); // msg_id -> push
    // The live region wraps the list: role=log on the <ol> itself would hide that it is a list.
    this.list = h("ol", { class: "chat-lines" });
    this.empty = h("p", { class: "empty", "data-k": "chat.empty" });
    this.log = h("div", { class: "chat-log", role: "log", "aria-live": "polite", "aria-relevant": "additions", "aria-labelledby": "chat-h", tabindex: "0" }, this.empty, this.list);
    this.input = h("textarea", { id: "chat-text", rows: "2", maxlength: "500", required: true, autocomplete: "off" });
    this.note = h("p", { class: "form-note", role: "status", id: "chat-note" });
    this.settings = h("p", { class: "chat-settings" });
    this.form = h("form", { class: "chat-form", onsubmit: (e) => this.send(e) },
      h("label", { for: "chat-text", "data-k": "chat.label" }),
      this.input,
      h("button", { type: "submit", "data-k": "chat.send" }),
      this.note);
    this.input.setAttribute("aria-describedby", "chat-note");
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.form.requestSubmit();
      }
    });
    this.root = h("section", { class: "panel chat", "aria-labelledby": "chat-h" },
      h("h2", { id: "chat-h", "data-k": "chat.title" }), this.settings, this.log, this.form);
    this.slowmode = 0;
  }

  snapshot(data) {
    const snap = data.snapshot;
    this.applySettings(snap.settings);
    if (data.first || data.reset) {
      this.lines.clear();
      replace(this.list);
      this.empty.hidden = false;
      for (const line of snap.chat) this.add(line);
    } else {
      for (const push of data.missed) this.push(push);
    }
  }

  push(msg) {
    if (msg.type === "chat.message") this.add(msg);
    else if (msg.type === "chat.deleted") this.remove(msg.msg_id);
    else if (msg.type === "chat.settings") this.applySettings(msg);
  }

  applySettings(settings) {
    this.slowmode = settings.slowmode;
    this.settings.textContent = settings.slowmode ? t("chat.slowmode_on", { seconds: settings.slowmode }) : "";
  }

  add(line) {
    if (this.lines.has(line.msg_id)) return;
    this.lines.set(line.msg_id, line);
    const mine = this.rt.user && line.author.id === this.rt.user.id;
    const report = mine ? null : h("button", {
      type: "button", class: "link small report", "data-name": line.author.name,
      onclick: (e) => this.report(line, e.currentTarget),
    });
    if (report) this.labelReport(report);
    const staff = line.author.role === "moderator" || line.author.role === "organiser";
    this.list.append(h("li", { "data-msg": line.msg_id, class: staff ? "staff" : "" },
      h("span", { class: "who", text: line.author.name }),
      staff ? h("span", { class: "badge", text: t(`role.${line.author.role}`) }) : null,
      h("time", { datetime: line.ts, class: "when", text: clock(line.ts, lang()) }),
      h("span", { class: "text", text: line.text }),
      report));
    while (this.list.children.length > 200) this.list.firstElementChild.remove();
    this.empty.hidden = true;
    // Follow new lines only when the reader is at the bottom already.
    const box = this.log;
    if (box.scrollHeight - box.scrollTop - box.clientHeight < 120) box.scrollTop = box.scrollHeight;
  }

  /** A line's report button in the current language (reported or not). */
  labelReport(button) {
    button.textContent = t(button.disabled ? "chat.reported" : "chat.report");
    button.setAttribute("aria-label", button.disabled ? t("chat.reported") : t("chat.report_line", { name: button.dataset.name }));
  }

  /** Redraw what the view drew in the previous language (call after a language switch). */
  relabel() {
    this.applySettings({ slowmode: this.slowmode });
    for (const button of this.list.querySelectorAll("button.report")) this.labelReport(button);
  }

  remove(msgId) {
    this.lines.delete(msgId);
    this.list.querySelector(`[data-msg="${CSS.escape(msgId)}"]`)?.remove();
    this.empty.hidden = this.list.children.length > 0;
  }

  async send(event) {
    event.preventDefault();
    const text = this.input.value.trim();
    if (!text) return;
    try {
      const result = await this.rt.request("chat.send", { topic: this.topic, text });
      // Cleared only once the server took it: a line typed while offline is kept.
      this.input.value = "";
      this.note.textContent = result.held ? t(`chat.held.${result.reason}`) : "";
    } catch (error) {
      this.note.textContent = errorText(error);
    }
  }

  async report(line, button) {
    try {
      await this.rt.request("chat.report", { topic: this.topic, msg_id: line.msg_id });
      button.disabled = true;
      this.labelReport(button);
    } catch (error) {
      this.note.textContent = errorText(error);
    }
  }
}

export class PollsView {
  constructor(rt, topic) {
    this.rt = rt;
    this.topic = topic;
    this.polls = new Map();
    this.list = h("div", { class: "polls" });
    this.announce = h("p", { class: "visually-hidden", role: "status" });
    this.root = h("section", { class: "panel polls-panel", "aria-labelledby": "polls-h" },
      h("h2", { id: "polls-h", "data-k": "polls.title" }), this.announce, this.list);
  }

  snapshot(data) {
    this.polls.clear();
    for (const poll of data.snapshot.polls) this.polls.set(poll.poll_id, { ...poll });
    this.render();
  }

  push(msg) {
    const poll = this.polls.get(msg.poll_id);
    if (msg.type === "poll.opened") {
      this.polls.set(msg.poll_id, { ...msg, voted: false });
      this.announce.textContent = t("polls.opened", { question: msg.question });
    } else if (msg.type === "poll.results" && poll) {
      poll.results = { counts: msg.counts, voters: msg.voters, mean: msg.mean, wall: msg.wall };
    } else if (msg.type === "poll.closed" && poll) {
      poll.state = "closed";
      if (msg.results) poll.results = msg.results;
      this.announce.textContent = t("polls.closed_announce", { question: poll.question });
    } else if (msg.type === "poll.wall" && poll) {
      poll.results = poll.results || { counts: {}, voters: 0 };
      const wall = poll.results.wall || [];
      // A shown answer keeps its place; a results push may already have carried it.
      if (!wall.includes(msg.text)) poll.results.wall = [...wall, msg.text];
    } else {
      return;
    }
    this.render();
  }

  render() {
    const polls = [...this.polls.values()];
    replace(this.list, polls.length ? polls.map((p) => this.card(p)) : h("p", { class: "empty", text: t("polls.none") }));
  }

  card(poll) {
    const id = `poll-${poll.poll_id}`;
    const open = poll.state === "open";
    const canVote = open && (!poll.voted || poll.allow_change);
    const card = h("article", { class: "poll", "aria-labelledby": `${id}-q` },
      h("h3", { id: `${id}-q`, text: poll.question }),
      h("p", { class: "poll-state", text: open ? t("polls.open") : t("polls.closed") }));
    if (canVote) card.append(this.form(poll, id));
    else if (poll.voted) card.append(h("p", { class: "voted", text: t("polls.voted") }));
    if (poll.results) card.append(results(poll));
    else if (poll.visibility !== "live" && open) card.append(h("p", { class: "hint", text: t(`polls.visibility.${poll.visibility}`) }));
    return card;
  }

  form(poll, id) {
    const fields = h("fieldset", {}, h("legend", { class: "visually-hidden", text: poll.question }));
    const kind = poll.kind;
    if (kind === "single" || kind === "multi") {
      for (const opt of poll.options) {
        const input = h("input", { type: kind === "single" ? "radio" : "checkbox", name: id, value: opt.id, id: `${id}-${opt.id}` });
        fields.append(h("div", { class: "choice" }, input, h("label", { for: `${id}-${opt.id}`, text: opt.label })));
      }
    } else if (kind === "scale") {
      const row = h("div", { class: "scale" });
      for (let i = 1; i <= (poll.scale_max || 5); i++) {
        row.append(h("span", { class: "choice" },
          h("input", { type: "radio", name: id, value: String(i), id: `${id}-${i}` }),
          h("label", { for: `${id}-${i}`, text: String(i) })));
      }
      fields.append(row);
    } else {
      fields.append(h("label", { for: `${id}-text`, text: t(kind === "wordcloud" ? "polls.words" : "polls.answer") }),
        h("input", { type: "text", id: `${id}-text`, maxlength: kind === "wordcloud" ? "120" : "280", autocomplete: "off" }));
    }
    const note = h("p", { class: "form-note", role: "status" });
    return h("form", {
      class: "vote",
      onsubmit: async (event) => {
        event.preventDefault();
        const form = event.currentTarget;
        let choice;
        if (kind === "single" || kind === "scale") {
          const picked = form.querySelector("input:checked");
          if (!picked) return (note.textContent = t("polls.pick"));
          choice = kind === "scale" ? Number(picked.value) : picked.value;
        } else if (kind === "multi") {
          choice = [...form.querySelectorAll("input:checked")].map((i) => i.value);
          if (!choice.length) return (note.textContent = t("polls.pick"));
        } else {
          choice = form.querySelector("input[type=text]").value.trim();
          if (!choice) return (note.textContent = t("polls.pick"));
        }
        try {
          await this.rt.request("poll.vote", { poll_id: poll.poll_id, choice, topic: this.topic });
          poll.voted = true;
          this.render();
          this.announce.textContent = t("polls.voted");
        } catch (error) {
          note.textContent = errorText(error);
        }
      },
    }, fields, h("button", { type: "submit", text: t("polls.vote") }), note);
  }
}

/** Results as bars (and as text for screen readers: the bars are the same numbers). */
export function results(poll, r = poll.results) {
  const box = h("div", { class: "results" }, h("p", { class: "voters", text: t("polls.voters", { n: r.voters }) }));
  if (poll.kind === "single" || poll.kind === "multi" || poll.kind === "scale") {
    const labels = poll.kind === "scale"
      ? Array.from({ length: poll.scale_max || 5 }, (_, i) => ({ id: String(i + 1), label: String(i + 1) }))
      : poll.options;
    const list = h("ul", { class: "bars" });
    for (const opt of labels) {
      const n = r.counts?.[opt.id] || 0;
      const pct = r.voters ? Math.round((100 * n) / r.voters) : 0;
      // Width through the CSSOM: the CSP forbids style attributes, not this.
      const fill = h("span", { class: "fill" });
      fill.style.width = `${Math.min(100, pct)}%`;
      list.append(h("li", {},
        h("span", { class: "bar-label", text: `${opt.label}: ${n} (${pct}%)` }),
        h("span", { class: "bar", "aria-hidden": "true" }, fill)));
    }
    box.append(list);
    if (poll.kind === "scale" && r.mean !== undefined && r.mean !== null) {
      box.append(h("p", { text: t("polls.mean", { mean: r.mean }) }));
    }
  } else if (poll.kind === "wordcloud") {
    box.append(h("ul", { class: "words" }, Object.entries(r.counts || {}).map(([w, n]) => h("li", { text: `${w} (${n})` }))));
  }
  if (r.wall?.length) {
    box.append(h("h4", { text: t("polls.wall") }), h("ul", { class: "wall" }, r.wall.map((text) => h("li", { text }))));
  }
  return box;
}

export class QaView {
  constructor(rt, topic) {
    this.rt = rt;
    this.topic = topic;
    this.questions = new Map();
    this.upvoted = new Set(JSON.parse(sessionStorage.getItem("hybridcon.upvoted") || "[]"));
    this.settings = { moderated: true, anonymous: false };
    this.list = h("ol", { class: "questions", "aria-labelledby": "qa-h" });
    this.input = h("textarea", { id: "qa-text", rows: "2", maxlength: "300", required: true });
    this.anon = h("input", { type: "checkbox", id: "qa-anon" });
    this.anonRow = h("div", { class: "choice" }, this.anon, h("label", { for: "qa-anon", "data-k": "qa.anonymous" }));
    this.note = h("p", { class: "form-note", role: "status", id: "qa-note" });
    this.input.setAttribute("aria-describedby", "qa-note");
    this.root = h("section", { class: "panel qa", "aria-labelledby": "qa-h" },
      h("h2", { id: "qa-h", "data-k": "qa.title" }),
      h("form", { class: "qa-form", onsubmit: (e) => this.ask(e) },
        h("label", { for: "qa-text", "data-k": "qa.label" }), this.input, this.anonRow,
        h("button", { type: "submit", "data-k": "qa.ask" }), this.note),
      this.list);
  }

  snapshot(data) {
    this.settings = data.snapshot.qa;
    this.questions.clear();
    for (const q of data.snapshot.questions) this.questions.set(q.question_id, q);
    this.render();
  }

  push(msg) {
    if (msg.type === "qa.question") {
      this.questions.set(msg.question_id, msg);
    } else if (msg.type === "qa.updated") {
      const q = this.questions.get(msg.question_id);
      if (!q) return;
      Object.assign(q, { upvotes: msg.upvotes, state: msg.state });
    } else if (msg.type === "qa.settings") {
      this.settings = { moderated: msg.moderated, anonymous: msg.anonymous };
    } else {
      return;
    }
    this.render();
  }

  render() {
    this.anonRow.hidden = !this.settings.anonymous;
    const shown = [...this.questions.values()]
      .filter((q) => q.state === "approved")
      .sort((a, b) => b.upvotes - a.upvotes || (a.ts < b.ts ? 1 : -1));
    replace(this.list, shown.length ? shown.map((q) => this.item(q)) : h("li", { class: "empty", text: t("qa.none") }));
  }

  item(q) {
    const mine = this.upvoted.has(q.question_id);
    return h("li", { class: "question", "data-question": q.question_id },
      h("p", { class: "text", text: q.text }),
      h("p", { class: "who", text: q.author ? q.author.name : t("qa.anonymous_author") }),
      // The visible words are the accessible name ("Steun 3"), as WCAG 2.5.3 asks.
      h("button", {
        type: "button", class: "upvote", "aria-pressed": String(mine), disabled: mine,
        onclick: () => this.upvote(q),
      }, h("span", { "aria-hidden": "true", text: "▲ " }), t("qa.upvote"), " ", h("span", { class: "n", text: String(q.upvotes) })));
  }

  async ask(event) {
    event.preventDefault();
    const text = this.input.value.trim();
    if (!text) return;
    const fields = { topic: this.topic, text };
    if (this.settings.anonymous && this.anon.checked) fields.anonymous = true;
    try {
      const q = await this.rt.request("qa.ask", fields);
      this.input.value = "";
      this.note.textContent = q.state === "pending" ? t("qa.pending") : t("qa.asked");
    } catch (error) {
      this.note.textContent = errorText(error);
    }
  }

  async upvote(q) {
    try {
      const result = await this.rt.request("qa.upvote", { question_id: q.question_id });
      this.upvoted.add(q.question_id);
      sessionStorage.setItem("hybridcon.upvoted", JSON.stringify([...this.upvoted]));
      q.upvotes = result.upvotes;
      this.render();
      this.list.querySelector(`[data-question="${CSS.escape(q.question_id)}"] .upvote`)?.focus();
    } catch (error) {
      this.note.textContent = errorText(error);
    }
  }
}

export class Reactions {
  constructor(rt, topic) {
    this.rt = rt;
    this.topic = topic;
    this.shown = h("p", { class: "reaction-counts", "aria-hidden": "true" });
    this.root = h("div", { class: "reactions", role: "group", "aria-labelledby": "react-h" },
      h("span", { id: "react-h", class: "label", "data-k": "react.title" }),
      EMOJI.map((emoji, i) => h("button", {
        type: "button", class: "emoji", "data-k-label": `react.${EMOJI_KEYS[i]}`,
        onclick: () => this.rt.request("react", { topic: this.topic, emoji }).catch(() => {}),
      }, h("span", { "aria-hidden": "true", text: emoji }))),
      this.shown);
  }

  push(msg) {
    if (msg.type !== "reactions") return;
    // Counts since the previous push: show them briefly, without announcing (not chatty).
    this.shown.textContent = Object.entries(msg.counts).map(([e, n]) => `${e} ${n}`).join("  ");
    clearTimeout(this.fade);
    this.fade = setTimeout(() => (this.shown.textContent = ""), 3000);
  }
}

/** Fill data-k (text) and data-k-label (aria-label) under `root` from the catalogue. */
export function label(root) {
  for (const el of root.querySelectorAll("[data-k]")) el.textContent = t(el.dataset.k);
  for (const el of root.querySelectorAll("[data-k-label]")) {
    el.setAttribute("aria-label", t(el.dataset.kLabel));
    el.title = t(el.dataset.kLabel);
  }
  return root;
}

export { append };
