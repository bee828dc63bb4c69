// What the pages with camera and microphone share (the online workshop, /session/{id},
// and the networking tables and pairings, /network): the own camera's preview with a
// choice of devices and on/off buttons, the grid of the others' videos, and lines whose
// words follow the language switch. The media itself is roommedia.js's.

import { h, replace } from "./dom.js";
import { t } from "./i18n.js";
import { RoomMedia } from "./roommedia.js";

/** Set a line from a function of the language, so a language switch redraws it. */
export function say(el, draw) {
  el.drawText = draw || null;
  el.textContent = draw ? draw() : "";
}

/** Redraw a line set with say() in the current language (unchanged text is not reset). */
export function resay(el) {
  if (!el.drawText) return;
  const text = el.drawText();
  if (el.textContent !== text) el.textContent = text;
}

/** A refusal of the media routes, in words (403 is the server's: not allowed now). */
export function mediaErrorText(error) {
  if (error.status === 403) return t("workshop.media.refused", { reason: error.message });
  if (error.status === 409) return t("workshop.media.full", { reason: error.message });
  if (error.status === 503) return t("workshop.media.unavailable");
  if (error.code === "offline") return t("error.offline");
  return t("workshop.media.failed", { reason: error.message });
}

/**
 * The own camera and microphone: a preview, the choice of camera and microphone, a
 * button that starts them and two that turn each off and on (aria-pressed). `prefix`
 * names the elements' ids (`<prefix>-camera`, `<prefix>-mic`, `<prefix>-media-note`);
 * `changed` is called when something the page shows may have changed.
 */
export class CameraControls {
  constructor(media, prefix, changed) {
    this.media = media;
    this.changed = changed;
    this.preview = h("video", { class: "video preview", autoplay: true, playsinline: true, "data-k-label": "workshop.media.preview" });
    this.preview.muted = true;
    this.cameraSelect = h("select", { id: `${prefix}-camera`, onchange: () => this.switchDevice() });
    this.micSelect = h("select", { id: `${prefix}-mic`, onchange: () => this.switchDevice() });
    this.startButton = h("button", { type: "button", class: "secondary", "data-k": "workshop.media.start", onclick: () => this.start() });
    this.camToggle = h("button", { type: "button", class: "secondary", "aria-pressed": "true", "data-k": "workshop.media.camera", onclick: () => this.toggle("video") });
    this.micToggle = h("button", { type: "button", class: "secondary", "aria-pressed": "true", "data-k": "workshop.media.microphone", onclick: () => this.toggle("audio") });
    this.note = h("p", { class: "form-note", id: `${prefix}-media-note`, role: "status" });
    this.devices = h("div", { class: "row devices" },
      h("div", {}, h("label", { for: `${prefix}-camera`, "data-k": "workshop.media.camera_choice" }), this.cameraSelect),
      h("div", {}, h("label", { for: `${prefix}-mic`, "data-k": "workshop.media.mic_choice" }), this.micSelect));
    this.previewBox = h("div", { class: "screen preview-box" }, this.preview);
  }

  /** Start (or switch) the camera and microphone; a refusal is said in the note. */
  async start() {
    say(this.note, null);
    try {
      await this.media.start(this.cameraSelect.value || undefined, this.micSelect.value || undefined);
      await this.fillDevices();
    } catch (error) {
      say(this.note, () => t(error.name === "NotAllowedError" ? "workshop.media.denied" : "workshop.media.no_device"));
    }
    this.changed();
  }

  async switchDevice() {
    if (this.media.local) await this.start();
  }

  async fillDevices() {
    const { cameras, microphones } = await RoomMedia.devices();
    const fill = (select, list, kind) => {
      const current = this.media.local?.getTracks().find((tr) => tr.kind === kind)?.getSettings().deviceId;
      replace(select, list.map((d, i) => h("option", {
        value: d.deviceId, selected: d.deviceId === current,
        text: d.label || t(kind === "video" ? "workshop.media.camera_n" : "workshop.media.mic_n", { n: i + 1 }),
      })));
    };
    fill(this.cameraSelect, cameras, "video");
    fill(this.micSelect, microphones, "audio");
  }

  toggle(kind) {
    this.media.setEnabled(kind, !this.media.enabled(kind));
    this.changed();
  }

  /** Show the controls as the media is now; the preview hides while `ownTile` shows it. */
  draw(ownTile) {
    const on = !!this.media.local;
    if (this.preview.srcObject !== this.media.local) this.preview.srcObject = this.media.local;
    this.preview.hidden = !on || ownTile;
    this.devices.hidden = !on;
    this.camToggle.hidden = !on;
    this.micToggle.hidden = !on;
    this.startButton.hidden = on;
    this.camToggle.setAttribute("aria-pressed", String(this.media.enabled("video")));
    this.micToggle.setAttribute("aria-pressed", String(this.media.enabled("audio")));
    resay(this.note);
  }
}

/**
 * The videos of a room: one tile (`li.tile[data-participant]`, a video and a caption)
 * per person seen, "self" for one's own camera. `describe(participant, tile)` writes a
 * tile's caption and the video's label (called on every draw, so the words follow the
 * language). `blocked()` is called when a browser refuses to play sound before a click.
 */
export class Tiles {
  constructor(labelledBy, describe, blocked) {
    this.map = new Map(); // participant -> {root, video, caption}
    this.describe = describe;
    this.blocked = blocked;
    this.grid = h("ul", { class: "tiles", "aria-labelledby": labelledBy });
  }

  get size() {
    return this.map.size;
  }

  tile(participant) {
    let tile = this.map.get(participant);
    if (!tile) {
      const video = h("video", { class: "video", autoplay: true, playsinline: true, "data-participant": participant });
      const caption = h("figcaption", {});
      const root = h("li", { class: "tile", "data-participant": participant }, h("figure", {}, video, caption));
      tile = { root, video, caption };
      this.map.set(participant, tile);
    }
    return tile;
  }

  /** Play `stream` in the participant's tile (one's own, muted: it would echo). */
  show(participant, stream) {
    const tile = this.tile(participant);
    tile.video.muted = participant === "self";
    if (tile.video.srcObject !== stream) tile.video.srcObject = stream;
    tile.video.play().catch(() => {
      // Autoplay with sound refused (no click yet): the next click anywhere starts it.
      document.addEventListener("click", () => tile.video.play().catch(() => {}), { once: true });
      this.blocked();
    });
    return tile;
  }

  drop(participant) {
    const tile = this.map.get(participant);
    if (!tile) return;
    tile.video.srcObject = null;
    tile.root.remove();
    this.map.delete(participant);
  }

  dropAll() {
    for (const participant of [...this.map.keys()]) this.drop(participant);
  }

  /** Caption every tile and put them in `order` (participants; the others after). */
  draw(order = []) {
    for (const [participant, tile] of this.map) this.describe(participant, tile);
    const rank = (p) => {
      const i = order.indexOf(p);
      return i < 0 ? order.length : i;
    };
    const roots = [...this.map.entries()].sort(([a], [b]) => rank(a) - rank(b)).map(([, tile]) => tile.root);
    if (roots.length !== this.grid.children.length || roots.some((root, i) => this.grid.children[i] !== root)) {
      this.grid.append(...roots);
    }
  }
}
