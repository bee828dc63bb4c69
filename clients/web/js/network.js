// Networking (/network): tables of up to six that people join and leave freely, and
// roulette pairing of two for a few minutes, with a way to leave and to report someone
// (docs/protocol.md, "Networking"). What concerns one person arrives as pushes on the
// connection without a topic (network.table, network.paired, network.unpaired).
//
// No camera or microphone here yet: the session media routes carry the online
// workshops' rooms only, not the tables' (net~t1) or the pairs' (net~p1). The page says so.

import { byId, h, replace } from "./dom.js";
import { errorText } from "./engage.js";
import { onLangChange, t } from "./i18n.js";
import { connectOrSignIn, startPage } from "./shell.js";

const REFRESH_MS = 5000;

async function main() {
  const { fragment: { code } } = await startPage(() => t("network.tagline"));
  const main = byId("main");
  const nav = () => replace(byId("stage-nav"),
    h("li", {}, h("a", { href: "/", text: t("nav.programme") })),
    h("li", {}, h("a", { href: "/network", "aria-current": "page", text: t("nav.network") })));
  nav();
  onLangChange(nav);
  const rt = connectOrSignIn(main, code);
  if (!rt) return;
  const lounge = new Lounge(rt, main);
  onLangChange(() => lounge.redraw());
  rt.connect();
}

class Lounge {
  constructor(rt, main) {
    this.rt = rt;
    this.main = main;
    this.tables = null; // [{table, people, seats}]
    this.place = { state: "out" }; // out | table {table, people, seats} | waiting | paired {partner, ends_at}
    this.reporting = null; // the person whose report form is open
    this.noticeKey = null;
    this.status = h("p", { id: "net-status", class: "notice", role: "status" });
    this.note = h("p", { id: "net-note", class: "form-note", role: "status" });
    this.tablesEl = h("div", { id: "net-tables" });
    this.placeEl = h("div", { id: "net-place" });
    this.rouletteEl = h("div", { id: "net-roulette" });
    this.timer = h("p", { class: "pair-timer", "aria-live": "off" });
    this.layout = h("div", { class: "network" });
    replace(main, this.layout);
    rt.addEventListener("push", (e) => this.onPush(e.detail));
    rt.addEventListener("status", (e) => {
      if (e.detail.status !== "online") return;
      // A new connection: the server let go of the old one's table or pairing.
      if (this.connectedBefore && this.place.state !== "out") {
        this.place = { state: "out" };
        this.say("network.notice.reconnected");
      }
      this.connectedBefore = true;
      this.refresh();
    });
    setInterval(() => {
      if (document.visibilityState === "visible") this.refresh();
    }, REFRESH_MS);
    setInterval(() => this.drawTimer(), 1000);
    this.redraw();
  }

  async refresh() {
    try {
      this.tables = (await this.rt.request("network.tables")).tables;
      this.drawTables();
    } catch {
      // offline: the badge says so; the next refresh tries again
    }
  }

  onPush(m) {
    if (m.type === "network.table") {
      this.place = { state: "table", ...m };
      this.refresh(); // the list's count of this table changed too
    } else if (m.type === "network.paired") {
      this.place = { state: "paired", room: m.room, partner: m.partner, ends_at: m.ends_at };
      this.say("network.notice.paired", { name: m.partner.name });
    } else if (m.type === "network.unpaired") {
      // Both wait for the next partner, until they leave.
      this.place = { state: "waiting" };
      this.say(`network.notice.unpaired.${m.reason}`);
    } else {
      return;
    }
    this.reporting = null;
    this.redraw();
  }

  async act(type, fields = {}) {
    say(this.note, null);
    try {
      return await this.rt.request(type, fields);
    } catch (error) {
      say(this.note, () => error.code === "conflict" && type === "network.join"
        ? t("network.full_table", { table: fields.table || "" })
        : errorText(error));
      return null;
    }
  }

  async join(table) {
    const result = await this.act("network.join", table ? { table } : {});
    if (!result) return this.refresh();
    this.place = result;
    this.say("network.notice.seated", { table: result.table });
    this.redraw();
    this.refresh();
  }

  async roulette() {
    const result = await this.act("network.roulette");
    if (!result) return;
    if (this.place.state !== "paired" || result.state === "paired") this.place = result;
    if (result.state === "waiting") this.say("network.notice.waiting");
    else if (result.state === "paired") this.say("network.notice.paired", { name: result.partner.name });
    this.redraw();
    this.refresh();
  }

  async leave() {
    const result = await this.act("network.leave");
    if (!result) return;
    this.place = { state: "out" };
    this.say("network.notice.left");
    this.redraw();
    this.refresh();
  }

  async report(person, reason) {
    const result = await this.act("network.report", { user_id: person.id, reason });
    if (!result) return;
    this.reporting = null;
    this.say("network.notice.reported", { name: person.name });
    this.redraw();
  }

  say(key, vars = {}) {
    this.noticeKey = [key, vars];
    this.status.textContent = t(key, vars);
  }

  redraw() {
    const notice = this.noticeKey ? t(...this.noticeKey) : "";
    if (this.status.textContent !== notice) this.status.textContent = notice;
    resay(this.note);
    this.status.hidden = !this.status.textContent;
    replace(this.layout,
      h("h1", { text: t("network.title") }),
      h("p", { class: "lead", text: t("network.intro") }),
      h("p", { class: "hint", id: "net-media", text: t("network.no_video") }),
      this.status, this.note,
      h("div", { class: "network-layout" },
        h("section", { class: "panel", "aria-labelledby": "tables-h" },
          h("h2", { id: "tables-h", text: t("network.tables.title") }), this.placeEl, this.tablesEl),
        h("section", { class: "panel", "aria-labelledby": "roulette-h" },
          h("h2", { id: "roulette-h", text: t("network.roulette.title") }),
          h("p", { text: t("network.roulette.intro") }), this.rouletteEl)));
    this.drawPlace();
    this.drawTables();
    this.drawRoulette();
  }

  drawPlace() {
    const p = this.place;
    if (p.state !== "table") return replace(this.placeEl);
    const uid = this.rt.user?.id;
    replace(this.placeEl,
      h("h3", { id: "my-table-h", text: t("network.tables.mine", { table: p.table, n: p.people.length, seats: p.seats }) }),
      h("ul", { class: "people", "aria-labelledby": "my-table-h" }, p.people.map((person) => this.personItem(person, uid))),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", "data-key": "leave-table", text: t("network.tables.leave"), onclick: () => this.leave() })));
  }

  personItem(person, uid) {
    const me = person.id === uid;
    const open = this.reporting === person.id;
    const item = h("li", { "data-person": person.id },
      h("span", { class: "who", text: me ? `${person.name} (${t("workshop.you")})` : person.name }));
    if (!me) {
      item.append(" ", h("button", {
        type: "button", class: "link small", "aria-expanded": String(open),
        "aria-label": t("network.report.for", { name: person.name }), text: t("network.report.button"),
        onclick: () => {
          this.reporting = open ? null : person.id;
          this.redraw();
          if (!open) this.placeEl.ownerDocument.getElementById("net-reason")?.focus();
        },
      }));
      if (open) item.append(this.reportForm(person));
    }
    return item;
  }

  reportForm(person) {
    const reason = h("textarea", { id: "net-reason", rows: "2", maxlength: "300" });
    return h("form", {
      class: "report-form",
      onsubmit: (e) => {
        e.preventDefault();
        this.report(person, reason.value.trim());
      },
    }, h("label", { for: "net-reason", text: t("network.report.reason", { name: person.name }) }), reason,
    h("button", { type: "submit", class: "danger", text: t("network.report.send") }));
  }

  drawTables() {
    // The list is redrawn every few seconds: the keyboard stays on the same button.
    const focused = document.activeElement?.dataset?.key;
    this._drawTables();
    if (focused) this.layout.querySelector(`[data-key="${CSS.escape(focused)}"]`)?.focus();
  }

  _drawTables() {
    const tables = this.tables;
    const seated = this.place.state === "table" ? this.place.table : null;
    if (tables === null) return replace(this.tablesEl, h("p", { class: "loading", text: t("loading") }));
    replace(this.tablesEl,
      h("h3", { id: "all-tables-h", text: t("network.tables.all") }),
      tables.length
        ? h("ul", { class: "net-tables", "aria-labelledby": "all-tables-h" }, tables.map((tb) => {
          const full = tb.people >= tb.seats;
          return h("li", { "data-table": tb.table },
            h("span", { class: "who", text: t("network.tables.table", { table: tb.table }) }), " ",
            h("span", { class: "meta", text: full ? t("network.tables.full", { seats: tb.seats }) : t("network.tables.count", { n: tb.people, seats: tb.seats }) }), " ",
            // A full table offers no seat (the server refuses one anyway: a list a few
            // seconds old may still show a seat, and the refusal is then said in words).
            tb.table === seated ? h("span", { class: "badge", text: t("network.tables.here") }) : full ? null : h("button", {
              type: "button", class: "secondary", "data-key": `join:${tb.table}`,
              "aria-label": t("network.tables.join_one", { table: tb.table }), text: t("network.tables.join"),
              onclick: () => this.join(tb.table),
            }));
        }))
        : h("p", { class: "empty", text: t("network.tables.none") }),
      seated ? null : h("div", { class: "actions" },
        h("button", { type: "button", "data-key": "join-any", text: t("network.tables.join_any"), onclick: () => this.join(null) })));
  }

  drawRoulette() {
    const p = this.place;
    const uid = this.rt.user?.id;
    if (p.state === "paired") {
      replace(this.rouletteEl,
        h("p", { class: "pair", id: "net-pair", text: t("network.roulette.paired", { name: p.partner.name }) }),
        this.timer,
        h("ul", { class: "people", "aria-label": t("network.roulette.partner") }, this.personItem(p.partner, uid)),
        h("div", { class: "actions" },
          h("button", { type: "button", class: "secondary", "data-key": "leave-pair", text: t("network.roulette.leave"), onclick: () => this.leave() })));
      this.drawTimer();
    } else if (p.state === "waiting") {
      replace(this.rouletteEl,
        h("p", { class: "pair", id: "net-pair", text: t("network.roulette.waiting") }),
        h("div", { class: "actions" },
          h("button", { type: "button", class: "secondary", "data-key": "leave-pair", text: t("network.roulette.leave"), onclick: () => this.leave() })));
    } else {
      replace(this.rouletteEl, h("div", { class: "actions" },
        h("button", { type: "button", "data-key": "roulette", text: t("network.roulette.start"), onclick: () => this.roulette() })));
    }
  }

  drawTimer() {
    if (this.place.state !== "paired") return;
    const left = Math.max(0, Math.round((new Date(this.place.ends_at) - Date.now()) / 1000));
    this.timer.textContent = t("network.roulette.time_left", { time: `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` });
  }
}

/** Set a line from a function of the language, so a language switch redraws it. */
function say(el, draw) {
  el.drawText = draw || null;
  el.textContent = draw ? draw() : "";
}

/** Redraw a line set with say() in the current language (unchanged text is not reset). */
function resay(el) {
  if (!el.drawText) return;
  const text = el.drawText();
  if (el.textContent !== text) el.textContent = text;
}

main().catch((error) => {
  const main = document.getElementById("main");
  if (main) replace(main, h("p", { class: "problem", role: "alert", text: `${error}` }));
});
