// The attendee page: /, /stage/{id}, /radio and /films. Sign in with the invite code,
// see the programme, watch, chat, vote, ask and react.

import { byId, h, replace } from "./dom.js";
import { CaptionsView } from "./captions.js";
import { ChatView, PollsView, QaView, Reactions, label } from "./engage.js";
import { lang, onLangChange, t } from "./i18n.js";
import { Player } from "./player.js";
import { dayPhase, dayProgramme, stageCard, stageLines, stagePath } from "./programme.js";
import { HEARTBEAT_MS } from "./realtime.js";
import { checkedIn, claims, redeem, redeemErrorKey, token } from "./session.js";
import { signedInConnection, signInForm, startPage } from "./shell.js";


async function main() {
  const { programme, fragment: { code } } = await startPage((p) => p.event.tagline || "");
  const stage = currentStage(programme);
  renderNav(programme, stage);
  const main = byId("main");
  let view = null;
  const draw = () => {
    if (view) view.redraw();
  };
  onLangChange(() => {
    renderNav(programme, stage);
    draw();
  });
  if (!claims()) {
    const signIn = signInForm({
      code,
      onSignedIn: () => location.reload(),
      redeem: (c) => redeem(c, "invite"),
      errorKey: redeemErrorKey,
    });
    view = { redraw: () => render() };
    const render = () => replace(main, signIn.root, overview(programme));
    render();
    // The first render with the programme (a budget of 1 s on loopback, tested).
    performance.mark("hybridcon:programme");
    onLangChange(() => signIn.redraw());
    return;
  }
  const rt = signedInConnection();
  if (!stage) {
    view = { redraw: () => replace(main, overview(programme)) };
    view.redraw();
    performance.mark("hybridcon:programme");
  } else {
    view = new StageView(rt, programme, stage, main);
  }
  rt.connect();
}

function currentStage(programme) {
  const path = location.pathname;
  if (path === "/radio") return programme.stages.find((s) => s.kind === "radio") || null;
  if (path === "/films") return programme.stages.find((s) => s.kind === "film") || null;
  const m = path.match(/^\/stage\/([^/]+)$/);
  return m ? programme.stages.find((s) => s.id === decodeURIComponent(m[1])) || null : null;
}

function renderNav(programme, current) {
  const nav = byId("stage-nav");
  replace(nav,
    h("li", {}, h("a", { href: "/", "aria-current": current ? false : "page", text: t("nav.programme") })),
    programme.stages.map((s) => h("li", {},
      h("a", { href: stagePath(s), "aria-current": current && current.id === s.id ? "page" : false, text: s.title }))));
}

/** The home view: now and next on every stage, then the whole day. */
function overview(programme) {
  const phase = dayPhase(programme);
  const date = new Date(`${programme.event.date}T12:00:00`).toLocaleDateString(
    document.documentElement.lang === "en" ? "en-GB" : "nl-BE",
    { weekday: "long", day: "numeric", month: "long", year: "numeric" });
  const checkin = claims() ? programme.sessions.find((s) => s.id === checkedIn()) : null;
  return h("div", { class: "overview" },
    h("section", { "aria-labelledby": "now-h" },
      h("h1", { id: "now-h", text: t("programme.title") }),
      checkin ? h("p", { class: "notice", role: "status", text: t("signin.checked_in", { title: checkin.title }) }) : null,
      h("p", { class: "lead", text: t(`programme.phase.${phase}`, { date, venue: programme.event.venue, city: programme.event.city }) }),
      h("ul", { class: "stage-cards" }, programme.stages.map((s) => stageCard(programme, s)))),
    h("section", { "aria-labelledby": "day-h" },
      h("h2", { id: "day-h", text: t("programme.day") }),
      dayProgramme(programme)));
}

class StageView {
  constructor(rt, programme, stage, main) {
    this.rt = rt;
    this.programme = programme;
    this.stage = stage;
    this.main = main;
    this.topic = `stage:${stage.id}`;
    this.streamed = stage.kind === "stream" || stage.kind === "radio";
    const role = claims()?.role;
    this.player = null;
    this.chat = new ChatView(rt, this.topic);
    this.polls = new PollsView(rt, this.topic);
    this.qa = new QaView(rt, this.topic);
    this.reactions = new Reactions(rt, this.topic);
    const captioner = ["captioner", "moderator", "organiser"].includes(role);
    this.captions = this.streamed ? new CaptionsView(rt, this.topic, captioner) : null;
    this.viewers = h("p", { class: "viewers", "aria-live": "off" });
    this.problem = h("p", { class: "problem", role: "alert" });
    this.nowNext = h("div", { class: "stage-nownext" });
    this.films = stage.kind === "film" ? h("section", { class: "panel films", "aria-labelledby": "films-h" }) : null;
    const playerBox = h("div", { class: "player", id: "player" });
    this.layout = h("div", { class: "stage-layout" },
      h("div", { class: "watch" },
        h("h1", { id: "stage-h", text: stage.title }),
        this.nowNext,
        this.problem,
        this.streamed ? playerBox : null,
        this.captions ? this.captions.root : null,
        this.films,
        this.streamed ? this.reactions.root : null,
        this.viewers),
      this.takePart = h("div", { class: "take-part" }, this.polls.root, this.qa.root, this.chat.root));
    replace(main, this.layout);
    if (this.streamed) {
      // Low latency (WHEP) for the people who need it: staff and speakers. Viewers use
      // HLS, which scales through a CDN; the player falls back either way.
      this.player = new Player(playerBox, { lowLatency: role !== "viewer", token });
      const beat = () => this.heartbeat();
      this.player.video.addEventListener("playing", beat);
      this.player.video.addEventListener("pause", beat);
      document.addEventListener("visibilitychange", beat);
      setInterval(beat, HEARTBEAT_MS);
    }
    this.redraw();
    rt.subscribe(this.topic, (kind, data) => this.onTopic(kind, data));
    if (this.films) this.loadFilms();
  }

  redraw() {
    label(this.layout);
    replace(this.nowNext, stageLines(this.programme, this.stage));
    this.polls.render();
    this.qa.render();
    if (this.player) this.player.render();
    this.chat.relabel();
    if (this.films) this.renderFilms();
    if (this.captions) this.captions.render();
    if (this.viewerCount !== undefined) this.setViewers(this.viewerCount);
  }

  onTopic(kind, data) {
    if (kind === "error") {
      if (data.code === "forbidden") {
        // Nothing to take part in here; the film room's recordings need no stage access.
        this.takePart.hidden = true;
        if (this.stage.kind !== "film") this.problem.textContent = t("stage.forbidden");
      } else {
        this.problem.textContent = t("error.other");
      }
      return;
    }
    if (kind === "snapshot") {
      this.problem.textContent = "";
      this.takePart.hidden = false;
      this.chat.snapshot(data);
      this.polls.snapshot(data);
      this.qa.snapshot(data);
      this.setViewers(data.snapshot.viewers);
      if (this.player && data.snapshot.stream) this.player.update(data.snapshot.stream);
      if (this.captions) this.captions.snapshot(data.snapshot);
      return;
    }
    const type = data.type;
    if (type.startsWith("chat.")) this.chat.push(data);
    else if (type.startsWith("poll.")) this.polls.push(data);
    else if (type.startsWith("qa.")) this.qa.push(data);
    else if (type === "reactions") this.reactions.push(data);
    else if (type === "caption" && this.captions) this.captions.push(data);
    else if (type === "presence.count") this.setViewers(data.viewers);
    else if (type === "stream.state" && this.player) {
      this.player.update(data);
      this.heartbeat();
    }
  }

  setViewers(n) {
    this.viewerCount = n;
    this.viewers.textContent = t("stage.viewers", { n });
  }

  heartbeat() {
    // The attentive-minutes input: sent while something plays, saying whether it is seen.
    if (!this.player || !this.player.playing) return;
    this.rt.request("presence.heartbeat", {
      topic: this.topic,
      playing: true,
      visible: document.visibilityState === "visible",
      muted: this.player.video.muted,
      quality: this.player.mode || "none",
    }).catch(() => {});
  }

  async loadFilms() {
    try {
      const response = await fetch("/api/v1/recordings", { headers: { Authorization: `Bearer ${token()}` } });
      this.recordings = response.ok ? (await response.json()).recordings : [];
    } catch {
      this.recordings = [];
    }
    this.renderFilms();
  }

  renderFilms() {
    const items = this.recordings || [];
    // Recordings are Matroska (H.264 or VP8 with Opus), as the server records them without
    // re-encoding. A browser that cannot play that gets a download link instead.
    const plays = document.createElement("video").canPlayType('video/x-matroska; codecs="avc1.42E01E, opus"') !== "";
    replace(this.films,
      h("h2", { id: "films-h", text: t("films.title") }),
      items.length
        ? h("ul", { class: "recordings" }, items.map((r) => h("li", {},
          h("h3", { text: `${r.title} · ${new Date(r.started_at).toLocaleString(lang() === "en" ? "en-GB" : "nl-BE")}` }),
          plays ? h("video", { controls: true, preload: "metadata", src: r.url, class: "video", "aria-label": r.title },
            r.captions_url ? h("track", { kind: "captions", srclang: "nl", label: t("captions.track"), src: r.captions_url, default: true }) : null) : null,
          h("p", {}, h("a", { href: r.url, download: r.file, text: t("films.download") })))))
        : h("p", { class: "empty", text: this.recordings ? t("films.none") : t("films.loading") }));
  }

}

main().catch((error) => {
  const main = document.getElementById("main");
  if (main) replace(main, h("p", { class: "problem", role: "alert", text: `${error}` }));
});
