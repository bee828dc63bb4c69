// Live captions under the player: the last lines a captioner sent (caption pushes),
// switched on or off and sized by the person (kept in this browser); and, for captioners,
// moderators and organisers, the box to type them in.

import { h, replace } from "./dom.js";
import { errorText } from "./engage.js";
import { t } from "./i18n.js";

const SIZES = ["normal", "large", "huge"];
const LINES = 2;

export class CaptionsView {
  constructor(rt, topic, canType) {
    this.rt = rt;
    this.topic = topic;
    this.cues = [];
    this.on = localStorage.getItem("hybridcon.captions") !== "off";
    this.size = SIZES.includes(localStorage.getItem("hybridcon.captions.size"))
      ? localStorage.getItem("hybridcon.captions.size") : "normal";
    // Seen, not announced: a screen reader user hears the speaker; a live region here
    // would read every line over the sound.
    this.box = h("div", { class: "captions", id: "captions", "aria-live": "off" });
    this.toggle = h("button", { type: "button", class: "secondary", onclick: () => this.setOn(!this.on) });
    this.sizeSelect = h("select", { id: "caption-size" });
    this.sizeSelect.addEventListener("change", () => {
      this.size = this.sizeSelect.value;
      localStorage.setItem("hybridcon.captions.size", this.size);
      this.render();
    });
    this.sizeLabel = h("label", { for: "caption-size" });
    this.tools = h("div", { class: "player-tools caption-tools" }, this.toggle,
      h("span", { class: "caption-size" }, this.sizeLabel, this.sizeSelect));
    this.root = h("div", {}, this.box, this.tools);
    if (canType) {
      this.input = h("input", { id: "caption-text", maxlength: "300", autocomplete: "off" });
      this.note = h("p", { class: "form-note", role: "status" });
      this.typeLabel = h("label", { for: "caption-text" });
      this.sendButton = h("button", { type: "submit" });
      this.form = h("form", { class: "caption-form", onsubmit: (e) => this.send(e) },
        this.typeLabel, this.input, this.sendButton, this.note);
      this.root.append(this.form);
    }
    this.render();
  }

  setOn(on) {
    this.on = on;
    localStorage.setItem("hybridcon.captions", on ? "on" : "off");
    this.render();
  }

  snapshot(snapshot) {
    this.cues = (snapshot.captions || []).slice(-LINES);
    this.render();
  }

  push(msg) {
    if (msg.type !== "caption") return;
    this.cues = [...this.cues, msg].slice(-LINES);
    this.render();
  }

  render() {
    // No black bar before the first line: the box shows once there is something to read.
    this.box.hidden = !this.on || this.cues.length === 0;
    this.box.dataset.size = this.size;
    replace(this.box, this.cues.map((c) => h("p", { class: "cue", text: c.text })));
    // One name; the pressed state says whether they are on.
    this.toggle.textContent = t("captions.toggle");
    this.toggle.setAttribute("aria-pressed", String(this.on));
    this.sizeLabel.textContent = t("captions.size");
    const chosen = this.size;
    replace(this.sizeSelect, SIZES.map((s) => h("option", { value: s, selected: s === chosen, text: t(`captions.size.${s}`) })));
    if (this.form) {
      this.typeLabel.textContent = t("captions.type");
      this.sendButton.textContent = t("captions.send");
    }
  }

  async send(event) {
    event.preventDefault();
    const text = this.input.value.trim();
    if (!text) return;
    try {
      await this.rt.request("caption.send", { topic: this.topic, text });
      this.input.value = "";
      this.note.textContent = "";
    } catch (error) {
      this.note.textContent = errorText(error);
    }
  }
}
