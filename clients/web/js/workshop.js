// An online workshop (/session/{id}): the lobby, camera and microphone with a preview and
// a choice of devices, the people publishing, raise hand, leave; the hosts' controls
// (open, admit, remove, mute, the floor, hands, spotlight, breakout groups, end); chat,
// polls and Q&A on session:<id> through the same views as a stage. The rules run on the
// server (docs/protocol.md, "Sessions"); this page shows them and asks.

import { byId, clock, h, replace } from "./dom.js";
import { ChatView, PollsView, QaView, Reactions, errorText, label } from "./engage.js";
import { lang, onLangChange, t } from "./i18n.js";
import { HEARTBEAT_MS } from "./realtime.js";
import { RoomMedia } from "./roommedia.js";
import { CameraControls, Tiles, mediaErrorText, resay, say } from "./roomview.js";
import { connectOrSignIn, startPage } from "./shell.js";

const LEVEL_MS = 1000;
const SPEAKING = 0.02; // audioLevel above which a feed counts as speaking
const CONFIRM_MS = 6000;

async function main() {
  const sessionId = decodeURIComponent(location.pathname.split("/")[2] || "");
  const { programme, fragment: { code } } = await startPage(() => t("workshop.tagline"));
  const session = programme.sessions.find((s) => s.id === sessionId);
  const main = byId("main");
  const nav = () => replace(byId("stage-nav"),
    h("li", {}, h("a", { href: "/", text: t("nav.programme") })),
    h("li", {}, h("a", { href: location.pathname, "aria-current": "page", text: session.title })),
    h("li", {}, h("a", { href: "/network", text: t("nav.network") })));
  nav();
  onLangChange(nav);
  // The rooms' state is one node's: a proxy sends /rooms/ws there (operations.md,
  // "Rooms across nodes").
  const rt = connectOrSignIn(main, code, "/rooms/ws");
  if (!rt) return;
  const view = new Workshop(rt, session, main);
  onLangChange(() => view.redraw());
  rt.connect();
}

class Workshop {
  constructor(rt, session, main) {
    this.rt = rt;
    this.session = session;
    this.id = session.id;
    this.topic = `session:${session.id}`;
    this.main = main;
    this.you = { state: "joining" }; // the person's place: joining, lobby, admitted, out, removed, ended, elsewhere
    this.state = null; // the session's public state (session.state)
    this.lobby = []; // hosts: the queue
    this.room = null;
    this.wantShare = false;
    this.speaking = null;
    this.confirming = null;
    this.tiles = new Tiles("room-h", (participant, tile) => this.caption(participant, tile),
      () => say(this.note, () => t("workshop.room.click_to_play")));
    this.media = new RoomMedia(session.id);
    this.media.addEventListener("feed", (e) => this.showFeed(e.detail.participant, e.detail.stream));
    this.media.addEventListener("feedgone", (e) => this.dropTile(e.detail.participant));
    this.media.addEventListener("local", (e) => this.showLocal(e.detail.stream));

    this.chat = new ChatView(rt, this.topic);
    this.polls = new PollsView(rt, this.topic);
    this.qa = new QaView(rt, this.topic);
    this.reactions = new Reactions(rt, this.topic);
    this.build();
    this.redraw();
    rt.subscribe(this.topic, (kind, data) => this.onTopic(kind, data));
    setInterval(() => this.activeSpeaker(), LEVEL_MS);
    // Attentive minutes in the room (R6), as a stage's player reports them: while the
    // person is in the room, saying whether the page is seen.
    setInterval(() => this.heartbeat(), HEARTBEAT_MS);
    document.addEventListener("visibilitychange", () => this.heartbeat());
  }

  heartbeat() {
    if (this.you.state !== "admitted" || this.state?.state === "ended") return;
    this.rt.request("presence.heartbeat", {
      topic: this.topic,
      playing: true,
      visible: document.visibilityState === "visible",
    }).catch(() => {});
  }

  // --- the page's frame, made once ------------------------------------------------------

  build() {
    this.status = h("p", { id: "ws-status", class: "notice", role: "status" });
    this.problem = h("p", { id: "ws-problem", class: "problem", role: "alert" });
    this.note = h("p", { id: "ws-note", class: "form-note", role: "status" });
    this.when = h("p", { class: "lead" });
    // Where the person is (the lobby's place, admitted, removed, …): one live line whose
    // text is set only when it changes, so a state push does not repeat it to a screen reader.
    this.place = h("p", { class: "place", id: "ws-place", role: "status" });
    this.placeButtons = h("div", { class: "actions" });
    this.placeActions = h("div", { class: "place-row" }, this.place, this.placeButtons);

    // Camera and microphone: the preview, the devices, on/off (roomview.js), share.
    const camera = new CameraControls(this.media, "ws", () => this.redraw());
    this.camera = camera;
    this.shareButton = h("button", { type: "button", id: "ws-share", onclick: () => this.share() });
    this.mediaHint = h("p", { class: "hint hide-empty", id: "ws-media-hint" });
    this.mediaNote = camera.note;
    this.mediaPanel = h("section", { class: "panel media-panel", "aria-labelledby": "media-h" },
      h("h2", { id: "media-h", "data-k": "workshop.media.title" }),
      camera.previewBox,
      camera.devices,
      h("div", { class: "actions" }, camera.startButton, camera.camToggle, camera.micToggle, this.shareButton),
      this.mediaHint, this.mediaNote);

    // The room: who publishes, the breakout group, the people.
    this.grid = this.tiles.grid;
    this.gridEmpty = h("p", { class: "empty", "data-k": "workshop.room.nobody" });
    this.groupLine = h("p", { class: "group-line" });
    this.timer = h("p", { class: "group-timer", "aria-live": "off" });
    this.handButton = h("button", { type: "button", class: "secondary", id: "ws-hand", "aria-pressed": "false", onclick: () => this.raiseHand() });
    this.roomPanel = h("section", { class: "panel room-panel", "aria-labelledby": "room-h" },
      h("h2", { id: "room-h", "data-k": "workshop.room.title" }),
      this.groupLine, this.timer, this.gridEmpty, this.grid,
      h("div", { class: "actions" }, this.handButton));
    this.peopleList = h("ul", { class: "people", id: "ws-people", "aria-labelledby": "people-h" });
    this.peoplePanel = h("section", { class: "panel", "aria-labelledby": "people-h" },
      h("h2", { id: "people-h", "data-k": "workshop.people.title" }), this.peopleList);

    // The hosts' panel.
    this.autoAdmit = h("input", { type: "checkbox", id: "ws-auto" });
    this.openForm = h("form", { class: "open-form", onsubmit: (e) => this.open(e) },
      h("div", { class: "choice" }, this.autoAdmit, h("label", { for: "ws-auto", "data-k": "workshop.host.auto_admit" })),
      h("button", { type: "submit", "data-k": "workshop.host.open" }));
    this.lobbyList = h("ol", { class: "lobby-list", id: "ws-lobby", "aria-labelledby": "lobby-h" });
    this.handsList = h("ol", { class: "hands-list", id: "ws-hands", "aria-labelledby": "hands-h" });
    this.breakoutCount = h("input", { type: "number", id: "ws-groups", min: "1", max: "50", value: "2", oninput: () => this.renderByHand() });
    this.breakoutMinutes = h("input", { type: "number", id: "ws-minutes", min: "1", max: "120", "aria-describedby": "ws-minutes-hint" });
    this.byHand = h("input", { type: "checkbox", id: "ws-byhand", onchange: () => this.renderByHand() });
    this.byHandBox = h("fieldset", { class: "by-hand", id: "ws-byhand-box" });
    this.breakoutForm = h("form", { class: "breakout-form", onsubmit: (e) => this.startBreakouts(e) },
      h("div", { class: "row" },
        h("div", {}, h("label", { for: "ws-groups", "data-k": "workshop.host.groups" }), this.breakoutCount),
        h("div", {}, h("label", { for: "ws-minutes", "data-k": "workshop.host.minutes" }), this.breakoutMinutes,
          h("p", { class: "hint", id: "ws-minutes-hint", "data-k": "workshop.host.minutes_hint" }))),
      h("div", { class: "choice" }, this.byHand, h("label", { for: "ws-byhand", "data-k": "workshop.host.by_hand" })),
      this.byHandBox,
      h("button", { type: "submit", "data-k": "workshop.host.split" }));
    this.breakoutsEnd = h("button", { type: "button", class: "secondary", "data-k": "workshop.host.bring_back", onclick: () => this.act("session.breakouts.end", {}, "workshop.done.back") });
    this.endButton = h("button", { type: "button", class: "danger", "data-key": "end", onclick: () => this.endSession() });
    this.hostPanel = h("section", { class: "panel host-panel", "aria-labelledby": "host-h", hidden: true },
      h("h2", { id: "host-h", "data-k": "workshop.host.title" }),
      this.openForm,
      h("h3", { id: "lobby-h", "data-k": "workshop.host.lobby" }), this.lobbyList,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", "data-k": "workshop.host.admit_all", onclick: () => this.act("session.admit", {}, "workshop.done.admitted") }),
        h("button", { type: "button", class: "secondary", "data-k": "workshop.host.mute_all", onclick: () => this.act("session.mute", { kind: "audio", muted: true }, "workshop.done.muted_all") })),
      h("h3", { id: "hands-h", "data-k": "workshop.host.hands" }), this.handsList,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", "data-k": "workshop.host.next_hand", onclick: () => this.act("session.next_hand", {}, "workshop.done.floor_given") })),
      h("h3", { id: "breakouts-h", "data-k": "workshop.host.breakouts" }),
      this.breakoutForm,
      h("div", { class: "actions" }, this.breakoutsEnd),
      h("h3", { "data-k": "workshop.host.end_title" }),
      h("div", { class: "actions" }, this.endButton));

    this.room = null;
    this.roomArea = h("div", { class: "room-area" }, this.roomPanel, this.mediaPanel);
    this.takePart = h("div", { class: "take-part" }, this.polls.root, this.qa.root, this.chat.root);
    this.layout = h("div", { class: "workshop" },
      h("h1", { id: "ws-h", text: this.session.title }),
      this.when, this.status, this.problem, this.placeActions, this.note,
      h("div", { class: "stage-layout" },
        h("div", { class: "watch" }, this.roomArea, this.hostPanel, this.peoplePanel, this.reactions.root),
        this.takePart));
    replace(this.main, this.layout);
  }

  // --- incoming -------------------------------------------------------------------------

  onTopic(kind, data) {
    if (kind === "error") {
      say(this.problem, () => data.code === "forbidden" ? t("workshop.forbidden") : errorText(data));
      this.takePart.hidden = true;
      return;
    }
    if (kind === "snapshot") {
      say(this.problem, null);
      this.takePart.hidden = false;
      this.chat.snapshot(data);
      this.polls.snapshot(data);
      this.qa.snapshot(data);
      const snap = data.snapshot.session;
      if (snap) {
        const { you, ...state } = snap;
        this.applyState(state);
        this.placeFrom(you);
      }
      return;
    }
    const m = data;
    const type = m.type;
    if (type.startsWith("chat.")) this.chat.push(m);
    else if (type.startsWith("poll.")) this.polls.push(m);
    else if (type.startsWith("qa.")) this.qa.push(m);
    else if (type === "reactions") this.reactions.push(m);
    else if (type === "session.state") this.applyState(m);
    else if (type === "session.waiting") {
      this.you = { ...this.you, state: "lobby", position: m.position };
      this.redraw();
    } else if (type === "session.admitted") {
      this.you = { state: "admitted", role: m.role, room: m.room, floor: this.you.floor };
      this.say("workshop.notice.admitted");
      this.heartbeat();
      this.hostSetup();
      this.redraw();
      this.syncMedia();
    } else if (type === "session.floor") {
      this.you = { ...this.you, floor: m.granted };
      this.say(m.granted ? "workshop.notice.floor_given" : "workshop.notice.floor_taken");
      // Without the floor the camera goes off at once (the server has ended the publish).
      if (!m.granted && this.myGroup() === 0) {
        this.wantShare = false;
        this.media.stop();
      }
      this.redraw();
    } else if (type === "session.muted") {
      this.media.setEnabled(m.kind, !m.muted);
      this.say(`workshop.notice.${m.kind}_${m.muted ? "muted" : "unmuted"}`);
      this.redraw();
    } else if (type === "session.left") {
      this.you = { state: m.reason === "removed" ? "removed" : "elsewhere" };
      joinedHere(this.id, false);
      this.leaveMedia();
      this.redraw();
    }
  }

  /**
   * The person's place from a (re)subscription's snapshot. `you` is the person's, not
   * this connection's: the page joins on every new connection unless the person left,
   * was removed or the workshop ended. After a reconnect the server has counted the old
   * connection as leaving (or is about to: then the join moves the person here).
   */
  placeFrom(you) {
    if (you.state === "removed") {
      this.you = { state: "removed" };
      this.leaveMedia();
    } else if (["joining", "admitted", "lobby"].includes(this.you.state)) {
      if (this.you.state === "admitted") this.leaveMedia(); // its peer connections ended
      this.join(false);
      return;
    }
    this.redraw();
  }

  applyState(state) {
    this.state = state;
    const me = this.me();
    if (state.state === "ended" && this.you.state !== "removed") {
      if (this.you.state !== "ended") this.leaveMedia();
      this.you = { state: "ended" };
    } else if (me && ["admitted", "lobby"].includes(this.you.state)) {
      // Only for this connection's own joining: a tab the person moved away from (or left)
      // still finds them among the people.
      this.you = { ...this.you, state: "admitted", role: me.role, room: me.room, floor: me.floor };
    }
    const inHere = me && this.you.state === "admitted";
    if (inHere && this.room !== null && me.room !== this.room) this.moved(me.room);
    if (inHere) this.room = me.room;
    this.redraw();
    // Ask for the feeds only when who publishes in the person's room changed.
    const room = me?.room;
    const publishing = (state.people || []).filter((p) => p.room === room && (p.audio || p.video))
      .map((p) => `${p.id}:${p.audio}:${p.video}`).join(",");
    const signature = `${room}|${publishing}`;
    if (this.you.state === "admitted" && signature !== this.feedSignature) {
      this.feedSignature = signature;
      this.syncMedia();
    }
  }

  me() {
    const uid = this.rt.user?.id;
    return this.state?.people?.find((p) => p.id === uid) || null;
  }

  myGroup() {
    return this.me()?.group || 0;
  }

  isHost() {
    return this.you.role === "host";
  }

  canPublish() {
    return this.you.state === "admitted" && (this.you.floor || this.myGroup() > 0 || ["host", "speaker"].includes(this.you.role));
  }

  // --- the person's own actions ---------------------------------------------------------

  async join(takeOver) {
    say(this.problem, null);
    try {
      const fields = { session: this.id };
      if (takeOver) fields.take_over = true;
      const result = await this.rt.request("session.join", fields);
      this.you = { ...result };
      joinedHere(this.id, true);
      if (result.state === "admitted") {
        this.say("workshop.notice.admitted");
        this.heartbeat();
      }
      this.hostSetup();
    } catch (error) {
      if (error.code === "forbidden" && /removed/.test(error.message)) this.you = { state: "removed" };
      else if (error.code === "closed") this.you = { state: "ended" };
      else if (error.code === "conflict" && /another connection/.test(error.message)) {
        // This tab was in (a reload, a reconnect before the server saw the old socket
        // close): move here at once. Another tab or device: ask first.
        if (!takeOver && joinedHere(this.id)) return this.join(true);
        this.you = { state: "elsewhere" };
      }
      else {
        this.you = { state: "out" };
        say(this.problem, () => error.code === "forbidden" ? t("workshop.forbidden") : errorText(error));
      }
    }
    this.redraw();
    this.syncMedia();
  }

  async leave() {
    try {
      await this.rt.request("session.leave", { session: this.id });
      joinedHere(this.id, false);
    } catch (error) {
      say(this.problem, () => errorText(error));
    }
    this.you = { state: "out" };
    this.leaveMedia();
    this.redraw();
  }

  async raiseHand() {
    const raised = !this.state?.hands?.includes(this.rt.user?.id);
    try {
      const result = await this.rt.request("session.hand", { session: this.id, raised });
      this.say(result.raised ? "workshop.notice.hand_up" : "workshop.notice.hand_down", { n: result.position });
    } catch (error) {
      say(this.note, () => errorText(error));
    }
  }

  async share() {
    say(this.mediaNote, null);
    if (this.media.publishing) {
      this.wantShare = false;
      await this.media.unpublish();
      this.dropTile("self");
      this.redraw();
      return;
    }
    if (!this.media.local) await this.camera.start();
    if (!this.media.local) return;
    try {
      await this.media.publish();
      this.wantShare = true;
      this.showLocal(this.media.local);
      say(this.mediaNote, () => t("workshop.media.sharing"));
    } catch (error) {
      say(this.mediaNote, () => mediaErrorText(error));
    }
    this.redraw();
  }

  /** Moved to a breakout group or back: the old room's connections have ended. */
  async moved(room) {
    const share = this.wantShare;
    this.media.dropAll();
    await this.media.unpublish();
    this.dropTile("self");
    this.say(room.includes("~") ? "workshop.notice.to_group" : "workshop.notice.to_main", { n: room.split("~")[1] });
    if (share && this.canPublish() && this.media.local) {
      try {
        await this.media.publish();
        this.showLocal(this.media.local);
      } catch (error) {
        say(this.mediaNote, () => mediaErrorText(error));
      }
    } else {
      this.wantShare = false;
    }
    this.syncMedia();
  }

  leaveMedia() {
    this.wantShare = false;
    this.media.dropAll();
    this.media.stop();
    this.tiles.dropAll();
    this.drawRoom();
  }

  syncMedia() {
    if (this.you.state !== "admitted" || this.state?.state === "ended") return;
    this.media.sync(this.rt.user?.id).catch(() => {});
  }

  // --- the hosts' actions ---------------------------------------------------------------

  hostSetup() {
    if (!this.isHost() || this.hostSubscribed) return;
    this.hostSubscribed = true;
    this.rt.subscribe(`mod:${this.topic}`, (kind, data) => {
      if (kind === "snapshot") this.lobby = data.snapshot.lobby || [];
      else if (kind === "push" && data.type === "session.lobby") this.lobby = data.lobby;
      else return;
      this.redraw();
    });
  }

  async act(type, fields, doneKey, vars = {}) {
    try {
      const result = await this.rt.request(type, { session: this.id, ...fields });
      if (doneKey) say(this.note, () => t(doneKey, vars));
      return result;
    } catch (error) {
      say(this.note, () => errorText(error));
      return null;
    }
  }

  async open(event) {
    event.preventDefault();
    await this.act("session.open", { auto_admit: this.autoAdmit.checked }, "workshop.done.opened");
  }

  /** A destructive button asks once more: the first press names what a second does. */
  confirmFirst(key, draw) {
    if (this.confirming === key) {
      this.confirming = null;
      return true;
    }
    this.confirming = key;
    say(this.note, draw);
    clearTimeout(this.confirmTimer);
    this.confirmTimer = setTimeout(() => {
      this.confirming = null;
      this.redraw();
    }, CONFIRM_MS);
    this.redraw();
    return false;
  }

  async endSession() {
    if (!this.confirmFirst("end", () => t("workshop.host.end_confirm"))) return;
    await this.act("session.end", {}, "workshop.done.ended");
  }

  async removePerson(person) {
    if (!this.confirmFirst(`remove:${person.id}`, () => t("workshop.host.remove_confirm", { name: person.name }))) return;
    await this.act("session.remove", { user_id: person.id }, "workshop.done.removed", { name: person.name });
  }

  async startBreakouts(event) {
    event.preventDefault();
    const fields = {};
    const minutes = Number(this.breakoutMinutes.value);
    if (minutes > 0) fields.minutes = minutes;
    if (this.byHand.checked) {
      const groups = [];
      for (const select of this.byHandBox.querySelectorAll("select")) {
        const n = Number(select.value);
        if (n > 0) (groups[n - 1] ||= []).push(select.dataset.person);
      }
      fields.groups = groups.filter((g) => g && g.length);
    } else {
      fields.count = Number(this.breakoutCount.value) || 1;
    }
    const result = await this.act("session.breakouts", fields, null);
    if (result) say(this.note, () => t("workshop.done.split", { n: result.groups }));
  }

  renderByHand() {
    this.byHandBox.hidden = !this.byHand.checked;
    if (!this.byHand.checked) return replace(this.byHandBox);
    const count = Math.max(1, Math.min(50, Number(this.breakoutCount.value) || 1));
    const kept = new Map([...this.byHandBox.querySelectorAll("select")].map((s) => [s.dataset.person, s.value]));
    const people = (this.state?.people || []).filter((p) => p.id !== this.rt.user?.id);
    replace(this.byHandBox,
      h("legend", { text: t("workshop.host.by_hand_legend") }),
      people.map((p, i) => {
        const id = `ws-bh-${i}`;
        const select = h("select", { id, "data-person": p.id, "data-key": `bh:${p.id}` },
          h("option", { value: "0", text: t("workshop.host.main_room") }),
          Array.from({ length: count }, (_, g) => h("option", { value: String(g + 1), text: t("workshop.group", { n: g + 1 }) })));
        select.value = kept.get(p.id) || String((i % count) + 1);
        return h("div", { class: "row" }, h("div", {}, h("label", { for: id, text: t("workshop.host.group_for", { name: p.name }) }), select));
      }));
  }

  // --- drawing --------------------------------------------------------------------------

  say(key, vars = {}) {
    this.lastNotice = [key, vars];
    this.status.textContent = t(key, vars);
  }

  redraw() {
    const active = document.activeElement;
    const focusKey = active?.dataset?.key;
    const focusAction = active?.dataset?.action;
    label(this.layout);
    const s = this.session;
    this.when.textContent = `${clock(s.starts_at, lang())}–${clock(s.ends_at, lang())} · ${t("workshop.tagline")}`;
    const notice = this.lastNotice ? t(...this.lastNotice) : "";
    if (this.status.textContent !== notice) this.status.textContent = notice;
    for (const el of [this.note, this.problem]) resay(el);
    this.status.hidden = !this.status.textContent;
    this.drawPlace();
    this.drawMedia();
    this.drawRoom();
    this.drawPeople();
    this.drawHost();
    this.polls.render();
    this.qa.render();
    this.chat.relabel();
    if (focusKey) {
      const sel = `[data-key="${CSS.escape(focusKey)}"]${focusAction ? `[data-action="${CSS.escape(focusAction)}"]` : ""}`;
      const el = this.main.querySelector(sel);
      if (el && el !== document.activeElement) el.focus();
    }
  }

  drawPlace() {
    const you = this.you;
    const state = this.state;
    let text = "";
    const buttons = [];
    if (you.state === "joining") text = t("workshop.place.joining");
    else if (you.state === "lobby") {
      const full = state && state.state === "open" && state.people.length >= state.capacity;
      const why = !state || state.state === "closed" ? "closed" : full ? "full" : "host";
      text = t(`workshop.lobby.${why}`, { n: you.position, capacity: state?.capacity ?? "" });
      buttons.push(h("button", { type: "button", class: "secondary", "data-key": "leave", text: t("workshop.leave_lobby"), onclick: () => this.leave() }));
    } else if (you.state === "admitted") {
      const group = this.myGroup();
      text = group ? t("workshop.place.group", { n: group }) : t(`workshop.place.admitted.${you.role}`);
      if (state?.state === "closed") text += ` ${t("workshop.place.not_open")}`;
      buttons.push(h("button", { type: "button", class: "secondary", "data-key": "leave", text: t("workshop.leave"), onclick: () => this.leave() }));
    } else if (you.state === "out") {
      text = t("workshop.place.out");
      buttons.push(h("button", { type: "button", "data-key": "join", text: t("workshop.join"), onclick: () => this.join(false) }));
    } else if (you.state === "elsewhere") {
      text = t("workshop.place.elsewhere");
      buttons.push(h("button", { type: "button", "data-key": "takeover", text: t("workshop.take_over"), onclick: () => this.join(true) }));
    } else if (you.state === "removed") text = t("workshop.place.removed");
    else if (you.state === "ended") text = t("workshop.place.ended");
    if (state?.media === "down" && you.state === "admitted") text += ` ${t("workshop.media.down")}`;
    if (this.place.textContent !== text) this.place.textContent = text;
    const keys = buttons.map((b) => b.dataset.key).join(",");
    if (keys !== this.placeKeys || this.placeLang !== lang()) {
      this.placeKeys = keys;
      this.placeLang = lang();
      replace(this.placeButtons, buttons);
    }
    const inRoom = you.state === "admitted";
    this.roomArea.hidden = !inRoom && you.state !== "lobby";
    this.roomPanel.hidden = !inRoom;
    this.peoplePanel.hidden = !inRoom;
  }

  drawMedia() {
    const inRoom = this.you.state === "admitted";
    // While publishing, one's own tile in the room is the preview.
    this.camera.draw(this.media.publishing);
    this.shareButton.hidden = !inRoom;
    this.shareButton.textContent = t(this.media.publishing ? "workshop.media.stop_sharing" : "workshop.media.share");
    const me = this.me();
    const hints = [];
    if (inRoom && !this.canPublish()) hints.push(t("workshop.media.no_floor"));
    if (me?.audio_muted) hints.push(t("workshop.media.host_muted_audio"));
    if (me?.video_muted) hints.push(t("workshop.media.host_muted_video"));
    if (!inRoom) hints.push(t("workshop.media.lobby_hint"));
    this.mediaHint.textContent = hints.join(" ");
  }

  drawRoom() {
    const state = this.state;
    const group = this.myGroup();
    const ends = state?.breakouts?.ends_at;
    // Someone in a group reads which one in the line above; the others that groups run.
    this.groupLine.textContent = !group && state?.breakouts ? t("workshop.room.groups_running", { n: state.breakouts.groups }) : "";
    this.groupLine.hidden = !this.groupLine.textContent;
    clearInterval(this.tick);
    const tickDraw = () => {
      const left = ends ? Math.max(0, Math.round((new Date(ends) - Date.now()) / 1000)) : null;
      this.timer.textContent = left === null ? "" : t("workshop.room.time_left", { time: `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` });
      this.timer.hidden = left === null;
    };
    tickDraw();
    if (ends) this.tick = setInterval(tickDraw, 1000);
    const hands = state?.hands || [];
    const mine = hands.indexOf(this.rt.user?.id);
    const canRaise = this.you.state === "admitted" && this.you.role === "participant" && !this.you.floor && !group;
    this.handButton.hidden = !canRaise;
    this.handButton.setAttribute("aria-pressed", String(mine >= 0));
    this.handButton.textContent = mine >= 0 ? t("workshop.hand.lower", { n: mine + 1 }) : t("workshop.hand.raise");
    this.handButton.dataset.key = "hand";
    // Tiles: the spotlight first; captions follow the language.
    const spotlight = state?.spotlight;
    this.tiles.draw(spotlight ? [spotlight === this.rt.user?.id ? "self" : spotlight] : []);
    this.gridEmpty.hidden = this.tiles.size > 0;
  }

  personName(id) {
    if (id === "self") return t("workshop.you_tile");
    return this.state?.people?.find((p) => p.id === id)?.name || t("workshop.someone");
  }

  caption(participant, tile) {
    const person = participant === "self" ? this.me() : this.state?.people?.find((p) => p.id === participant);
    const id = participant === "self" ? this.rt.user?.id : participant;
    const badges = [];
    if (this.state?.spotlight === id) badges.push(t("workshop.tile.spotlight"));
    if (this.speaking === participant) badges.push(t("workshop.tile.speaking"));
    if (person?.audio_muted) badges.push(t("workshop.tile.muted"));
    const name = this.personName(participant);
    tile.root.classList.toggle("spotlight", this.state?.spotlight === id);
    tile.root.classList.toggle("speaking", this.speaking === participant);
    tile.video.setAttribute("aria-label", t("workshop.tile.video", { name }));
    replace(tile.caption, h("span", { class: "who", text: name }), badges.map((b) => h("span", { class: "badge", text: b })));
  }

  showFeed(participant, stream) {
    this.tiles.show(participant, stream);
    this.drawRoom();
  }

  showLocal(stream) {
    if (stream && this.media.publishing) this.tiles.show("self", stream);
    else if (!stream) this.tiles.drop("self");
    this.redraw();
  }

  dropTile(participant) {
    this.tiles.drop(participant);
    this.drawRoom();
  }

  async activeSpeaker() {
    if (!this.media.feeds.size) {
      if (this.speaking) {
        this.speaking = null;
        this.drawRoom();
      }
      return;
    }
    const levels = await this.media.levels();
    let best = null;
    let loudest = SPEAKING;
    for (const [participant, level] of levels) {
      if (level > loudest) {
        loudest = level;
        best = participant;
      }
    }
    if (best !== this.speaking) {
      this.speaking = best;
      this.drawRoom();
    }
  }

  drawPeople() {
    const people = this.state?.people || [];
    const hands = this.state?.hands || [];
    const host = this.isHost();
    const uid = this.rt.user?.id;
    replace(this.peopleList, people.length ? people.map((p) => {
      const marks = [t(`workshop.role.${p.role}`)];
      if (p.floor && p.role === "participant") marks.push(t("workshop.people.floor"));
      const hand = hands.indexOf(p.id);
      if (hand >= 0) marks.push(t("workshop.people.hand", { n: hand + 1 }));
      if (p.audio || p.video) marks.push(t("workshop.people.publishing"));
      if (p.audio_muted) marks.push(t("workshop.people.audio_muted"));
      if (p.video_muted) marks.push(t("workshop.people.video_muted"));
      if (p.group) marks.push(t("workshop.group", { n: p.group }));
      if (this.state?.spotlight === p.id) marks.push(t("workshop.tile.spotlight"));
      const actions = [];
      if (host && p.role !== "host") {
        const btn = (action, key, onclick, cls = "secondary") => h("button", {
          type: "button", class: cls, "data-key": p.id, "data-action": action,
          "aria-label": `${t(key)}: ${p.name}`, text: t(key), onclick,
        });
        if (p.role === "participant") {
          actions.push(p.floor
            ? btn("floor", "workshop.host.take_floor", () => this.act("session.floor", { user_id: p.id, grant: false }, "workshop.done.floor_taken"))
            : btn("floor", "workshop.host.give_floor", () => this.act("session.floor", { user_id: p.id, grant: true }, "workshop.done.floor_given")));
        }
        actions.push(p.audio_muted
          ? btn("mute", "workshop.host.unmute", () => this.act("session.mute", { user_id: p.id, kind: "audio", muted: false }, "workshop.done.unmuted"))
          : btn("mute", "workshop.host.mute", () => this.act("session.mute", { user_id: p.id, kind: "audio", muted: true }, "workshop.done.muted")));
        actions.push(this.state?.spotlight === p.id
          ? btn("spotlight", "workshop.host.unspotlight", () => this.act("session.spotlight", { user_id: null }, null))
          : btn("spotlight", "workshop.host.spotlight", () => this.act("session.spotlight", { user_id: p.id }, null)));
        const confirming = this.confirming === `remove:${p.id}`;
        actions.push(btn("remove", confirming ? "workshop.host.remove_sure" : "workshop.host.remove", () => this.removePerson(p), "danger"));
      }
      return h("li", { "data-person": p.id },
        h("span", { class: "who", text: p.id === uid ? `${p.name} (${t("workshop.you")})` : p.name }),
        " ", h("span", { class: "meta", text: marks.join(" · ") }),
        actions.length ? h("div", { class: "actions" }, actions) : null);
    }) : h("li", { class: "empty", text: t("workshop.people.none") }));
  }

  drawHost() {
    const host = this.isHost() && this.you.state === "admitted";
    this.hostPanel.hidden = !host;
    if (!host) return;
    const phase = this.state?.state;
    this.openForm.hidden = phase !== "closed";
    replace(this.lobbyList, this.lobby.length ? this.lobby.map((w) => h("li", {},
      h("span", { class: "who", text: w.name }), " ",
      h("span", { class: "meta", text: t("workshop.host.waiting_since", { time: clock(w.since, lang()) }) }), " ",
      h("button", {
        type: "button", class: "secondary", "data-key": `lobby:${w.id}`, "data-action": "admit",
        "aria-label": `${t("workshop.host.admit")}: ${w.name}`, text: t("workshop.host.admit"),
        onclick: () => this.act("session.admit", { user_id: w.id }, "workshop.done.admitted_one", { name: w.name }),
      }))) : h("li", { class: "empty", text: t("workshop.host.lobby_empty") }));
    const hands = this.state?.hands || [];
    replace(this.handsList, hands.length ? hands.map((id) => h("li", {}, h("span", { class: "who", text: this.personName(id) }), " ",
      h("button", {
        type: "button", class: "secondary", "data-key": `hand:${id}`, "data-action": "floor",
        "aria-label": `${t("workshop.host.give_floor")}: ${this.personName(id)}`, text: t("workshop.host.give_floor"),
        onclick: () => this.act("session.floor", { user_id: id, grant: true }, "workshop.done.floor_given"),
      }))) : h("li", { class: "empty", text: t("workshop.host.no_hands") }));
    const running = !!this.state?.breakouts;
    this.breakoutForm.hidden = running || phase !== "open";
    this.breakoutsEnd.hidden = !running;
    if (this.byHand.checked && !running) this.renderByHand();
    this.endButton.hidden = phase === "ended";
    this.endButton.textContent = t(this.confirming === "end" ? "workshop.host.end_sure" : "workshop.host.end");
  }
}

/** Whether this tab joined `session` (kept per tab, for a reload); with `on`, set it. */
function joinedHere(session, on) {
  const key = `hybridcon.joined:${session}`;
  if (on === true) sessionStorage.setItem(key, "1");
  else if (on === false) sessionStorage.removeItem(key);
  return sessionStorage.getItem(key) === "1";
}

main().catch((error) => {
  const main = document.getElementById("main");
  if (main) replace(main, h("p", { class: "problem", role: "alert", text: `${error}` }));
});
