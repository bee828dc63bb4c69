// Networking (/network): tables of up to six that people join and leave freely, and
// roulette pairing of two for a few minutes, with a way to leave and to report someone
// (docs/protocol.md, "Networking"). What concerns one person arrives as pushes on the
// connection without a topic (network.table, network.paired, network.unpaired,
// network.removed).
//
// Camera and microphone: a table (net~t1) and a pairing (net~p1) are rooms, reached
// through the networking media routes (docs/protocol.md, "Networking tables' and
// pairings' media") with roommedia.js, as the workshop page does; the preview, the
// devices and the grid of videos are roomview.js's, shared with that page. Sitting down
// (or being paired) starts the preview; sharing publishes into the room, and the page
// publishes again in the next pairing's room while sharing is on. The others' feeds are
// watched as they appear (asked on every change of the table, and every few seconds).

import { byId, h, replace } from "./dom.js";
import { errorText, label } from "./engage.js";
import { onLangChange, t } from "./i18n.js";
import { RoomMedia, networkBase } from "./roommedia.js";
import { CameraControls, Tiles, mediaErrorText, resay, say } from "./roomview.js";
import { connectOrSignIn, startPage } from "./shell.js";

const REFRESH_MS = 5000;
const FEEDS_MS = 3000;

async function main() {
  const { fragment: { code } } = await startPage(() => t("network.tagline"));
  const main = byId("main");
  const nav = () => replace(byId("stage-nav"),
    h("li", {}, h("a", { href: "/", text: t("nav.programme") })),
    h("li", {}, h("a", { href: "/network", "aria-current": "page", text: t("nav.network") })));
  nav();
  onLangChange(nav);
  // The rooms' state is one node's: a proxy sends /rooms/ws there (operations.md,
  // "Rooms across nodes").
  const rt = connectOrSignIn(main, code, "/rooms/ws");
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
    this.buildMedia();
    this.layout = h("div", { class: "network" },
      h("h1", { "data-k": "network.title" }),
      h("p", { class: "lead", "data-k": "network.intro" }),
      this.status, this.note,
      this.mediaPanel,
      h("div", { class: "network-layout" },
        h("section", { class: "panel", "aria-labelledby": "tables-h" },
          h("h2", { id: "tables-h", "data-k": "network.tables.title" }), this.placeEl, this.tablesEl),
        h("section", { class: "panel", "aria-labelledby": "roulette-h" },
          h("h2", { id: "roulette-h", "data-k": "network.roulette.title" }),
          h("p", { "data-k": "network.roulette.intro" }), this.rouletteEl)));
    replace(main, this.layout);
    rt.addEventListener("push", (e) => this.onPush(e.detail));
    rt.addEventListener("status", (e) => {
      if (e.detail.status !== "online") return;
      // A new connection: the server let go of the old one's table or pairing.
      if (this.connectedBefore && this.place.state !== "out") {
        this.place = { state: "out" };
        this.say("network.notice.reconnected");
        this.redraw();
        this.follow();
      }
      this.connectedBefore = true;
      this.refresh();
    });
    setInterval(() => {
      if (document.visibilityState === "visible") this.refresh();
    }, REFRESH_MS);
    setInterval(() => this.drawTimer(), 1000);
    setInterval(() => {
      if (this.media.base && document.visibilityState === "visible") this.syncFeeds();
    }, FEEDS_MS);
    this.redraw();
  }

  // --- camera and microphone at the table or in the pairing ----------------------------

  buildMedia() {
    this.media = new RoomMedia(null, null);
    this.wantShare = false;
    this.camera = new CameraControls(this.media, "net", () => this.redraw());
    this.tiles = new Tiles("net-media-h", (participant, tile) => this.caption(participant, tile),
      () => say(this.note, () => t("workshop.room.click_to_play")));
    this.media.addEventListener("feed", (e) => {
      this.tiles.show(e.detail.participant, e.detail.stream);
      this.drawMedia();
    });
    this.media.addEventListener("feedgone", (e) => {
      this.tiles.drop(e.detail.participant);
      this.drawMedia();
    });
    this.media.addEventListener("local", (e) => {
      if (!e.detail.stream) this.tiles.drop("self");
      else if (this.media.publishing) this.tiles.show("self", e.detail.stream);
      this.drawMedia();
    });
    const camera = this.camera;
    this.shareButton = h("button", { type: "button", id: "net-share", onclick: () => this.share() });
    this.mediaHint = h("p", { class: "hint", id: "net-media" });
    this.gridEmpty = h("p", { class: "empty", "data-k": "network.media.nobody" });
    this.mediaPanel = h("section", { class: "panel media-panel net-media", "aria-labelledby": "net-media-h" },
      h("h2", { id: "net-media-h", "data-k": "network.media.title" }),
      this.mediaHint, this.gridEmpty, this.tiles.grid,
      camera.previewBox, camera.devices,
      h("div", { class: "actions" }, camera.startButton, camera.camToggle, camera.micToggle, this.shareButton),
      camera.note);
  }

  /** The media room of the person's place now: their table's or their pairing's. */
  mediaRoom() {
    const p = this.place;
    return p.state === "table" || p.state === "paired" ? p.room : null;
  }

  /**
   * Follow the place with the media: a new room (sat down, paired, moved) ends what the
   * old one carried and starts the preview, and publishes again while sharing is on;
   * out of everything, the camera stops. Runs one at a time (pushes come in bursts).
   */
  follow() {
    this.following = (this.following || Promise.resolve()).then(() => this._follow()).catch(() => {});
    return this.following;
  }

  async _follow() {
    const room = this.mediaRoom();
    const base = room ? networkBase(room) : null;
    if (base !== this.media.base) {
      await this.media.move(base);
      this.tiles.dropAll();
      if (this.place.state === "out") {
        this.wantShare = false;
        await this.media.stop();
      }
      if (room && !this.media.local) await this.camera.start();
      if (room && this.wantShare && this.media.local) await this.publish();
    }
    this.drawMedia();
    await this.syncFeeds();
  }

  async syncFeeds() {
    if (!this.media.base) return;
    try {
      await this.media.sync(this.rt.user?.id);
    } catch {
      // Stood up meanwhile (403/404), or offline: the next change or tick asks again.
    }
  }

  async publish() {
    try {
      await this.media.publish();
      this.tiles.show("self", this.media.local);
      say(this.camera.note, () => t("workshop.media.sharing"));
    } catch (error) {
      this.wantShare = false;
      say(this.camera.note, () => mediaErrorText(error));
    }
  }

  async share() {
    say(this.camera.note, null);
    if (this.media.publishing) {
      this.wantShare = false;
      await this.media.unpublish();
      this.tiles.drop("self");
    } else {
      if (!this.media.local) await this.camera.start();
      if (this.media.local && this.media.base) {
        this.wantShare = true;
        await this.publish();
      }
    }
    this.drawMedia();
  }

  personName(participant) {
    if (participant === "self") return t("workshop.you_tile");
    const p = this.place;
    const people = p.state === "table" ? p.people : p.state === "paired" ? [p.partner] : [];
    return people.find((person) => person.id === participant)?.name || t("workshop.someone");
  }

  caption(participant, tile) {
    const name = this.personName(participant);
    tile.video.setAttribute("aria-label", t("workshop.tile.video", { name }));
    replace(tile.caption, h("span", { class: "who", text: name }));
  }

  drawMedia() {
    const room = this.mediaRoom();
    const on = !!this.media.local;
    this.mediaPanel.hidden = !room && !on;
    this.camera.draw(this.media.publishing);
    this.shareButton.hidden = !room;
    this.shareButton.textContent = t(this.media.publishing ? "workshop.media.stop_sharing" : "network.media.share");
    this.mediaHint.textContent = room ? t(`network.media.hint.${this.place.state}`) : t("network.media.between");
    this.tiles.draw(["self"]);
    this.gridEmpty.hidden = this.tiles.size > 0 || !room;
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
    } else if (m.type === "network.removed") {
      this.place = { state: "out" };
      this.say("network.notice.removed", { table: m.table });
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
    this.follow();
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
    this.follow();
  }

  async roulette() {
    const result = await this.act("network.roulette");
    if (!result) return;
    if (this.place.state !== "paired" || result.state === "paired") this.place = result;
    if (result.state === "waiting") this.say("network.notice.waiting");
    else if (result.state === "paired") this.say("network.notice.paired", { name: result.partner.name });
    this.redraw();
    this.refresh();
    this.follow();
  }

  async leave() {
    const result = await this.act("network.leave");
    if (!result) return;
    this.place = { state: "out" };
    this.say("network.notice.left");
    this.redraw();
    this.refresh();
    this.follow();
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
    label(this.layout);
    this.drawMedia();
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

main().catch((error) => {
  const main = document.getElementById("main");
  if (main) replace(main, h("p", { class: "problem", role: "alert", text: `${error}` }));
});
