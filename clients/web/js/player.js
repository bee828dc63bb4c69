// The player of a stage: HLS for everyone (hls.js where Media Source Extensions exist,
// loaded only then; the browser's own HLS elsewhere), WHEP for low latency where the token allows it, and the
// stream's state in words. When the chosen way fails it tries the other one by itself.

import { h, replace } from "./dom.js";
import { t } from "./i18n.js";

const HLS_MIME = "application/vnd.apple.mpegurl";

export class Player {
  /**
   * @param {HTMLElement} root where the player goes
   * @param {{lowLatency: boolean, token: () => string}} options lowLatency: try WHEP first
   */
  constructor(root, options) {
    this.options = options;
    this.stream = { state: "scheduled", hls_url: null, whep_url: null, audio_only: false };
    this.mode = null; // "hls" | "whep" | null
    this.failed = new Set();
    this.hls = null;
    this.pc = null;
    this.whepLocation = null;
    this.audioOnly = false;
    this.retry = null;
    this.video = h("video", {
      controls: true, playsinline: true, preload: "none", class: "video",
      "aria-describedby": "stream-state",
    });
    this.stateText = h("p", { id: "stream-state", class: "stream-state", role: "status" });
    this.audioButton = h("button", {
      type: "button", class: "secondary", "aria-pressed": "false",
      onclick: () => this.setAudioOnly(!this.audioOnly),
    });
    this.poster = h("div", { class: "poster", "aria-hidden": "true" });
    replace(root, h("div", { class: "screen" }, this.video, this.poster), this.stateText,
      h("div", { class: "player-tools" }, this.audioButton));
    this.video.addEventListener("error", () => {
      // Only an error of the HLS source we set counts (emptying the element is no failure).
      if (this.mode === "hls" && !this.hls && this.video.getAttribute("src") === this.stream.hls_url) {
        this._failed();
      }
    });
    this.video.addEventListener("ended", () => {
      // A stage live again can briefly serve the previous playlist with its ENDLIST
      // (docs/protocol.md, known issue): load it again while the stage says live.
      if (this.stream.state === "live" && this.mode === "hls") this._scheduleRetry();
    });
    this.render();
  }

  /** Whether media is playing now (the heartbeat's `playing`). */
  get playing() {
    return !this.video.paused && !this.video.ended && this.video.readyState > 2;
  }

  /** Apply a snapshot's `stream` or a `stream.state` push. */
  update(stream) {
    const before = this.stream;
    this.stream = { ...this.stream, ...stream };
    if (this.stream.audio_only) this.audioOnly = true;
    if (this.stream.state !== "live") {
      this.stop();
      this.failed.clear();
    } else if (
      this.mode === null ||
      // Only the way in use matters: a new HLS link must not cut a working WHEP picture.
      (this.mode === "hls" && this.stream.hls_url !== before.hls_url) ||
      (this.mode === "whep" && this.stream.whep_url !== before.whep_url)
    ) {
      this.start();
    }
    this.render();
  }

  /** Listen only (weak connection, or the radio); the picture is hidden, not fetched anew. */
  setAudioOnly(on) {
    this.audioOnly = on || this.stream.audio_only;
    this.render();
  }

  render() {
    const state = this.stream.state;
    const way = this.mode === "whep" ? t("player.way.whep") : this.mode === "hls" ? t("player.way.hls") : "";
    let text = t(`player.state.${state}`);
    if (state === "live" && !this.mode && !this.stream.hls_url && !this.stream.whep_url) {
      text = t("player.state.starting");
    }
    this.stateText.textContent = way ? `${text} · ${way}` : text;
    this.stateText.dataset.state = state;
    // Not live: no empty black player, but the state in words where the picture would be.
    const picture = state === "live" && !this.audioOnly;
    this.video.hidden = !picture;
    this.poster.hidden = picture;
    this.poster.textContent = state === "live" ? "🎧" : t(`player.state.${state}`);
    // The line under the player says it once for screen readers; seen, the poster says it.
    this.stateText.classList.toggle("visually-hidden", !picture && state !== "live");
    this.audioButton.hidden = this.stream.audio_only || state !== "live";
    this.audioButton.textContent = this.audioOnly ? t("player.show_video") : t("player.audio_only");
    this.audioButton.setAttribute("aria-pressed", String(this.audioOnly));
  }

  start() {
    this.stop();
    const whep = this.stream.whep_url && !this.failed.has("whep");
    const hls = this.stream.hls_url && !this.failed.has("hls");
    // WHEP seats are few (whep_max_viewers): viewers take one only when HLS failed, and
    // otherwise wait for the link of the first HLS segment (a few seconds after "live").
    if (whep && (this.options.lowLatency || this.failed.has("hls"))) this._startWhep();
    else if (hls) this._startHls();
    this.render();
  }

  stop() {
    clearTimeout(this.retry);
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    if (this.pc) {
      this.pc.close();
      this.pc = null;
      if (this.whepLocation) {
        fetch(this.whepLocation, {
          method: "DELETE", headers: { Authorization: `Bearer ${this.options.token()}` },
        }).catch(() => {});
        this.whepLocation = null;
      }
    }
    this.video.removeAttribute("src");
    this.video.srcObject = null;
    this.mode = null;
  }

  async _startHls() {
    this.mode = "hls";
    const url = this.stream.hls_url;
    // hls.js over Media Source Extensions wherever they exist; the browser's own HLS only
    // without them (iPhones). Chromium's own HLS does not parse every live playlist.
    const mse = "MediaSource" in window || "ManagedMediaSource" in window;
    if (!mse && this.video.canPlayType(HLS_MIME)) {
      this.video.src = url;
      this.video.play().catch(() => {});
      return;
    }
    try {
      const { default: Hls } = await import("/static/vendor/hls.mjs");
      if (this.mode !== "hls" || this.stream.hls_url !== url) return;
      if (!Hls.isSupported()) return this._failed();
      const hls = new Hls({ liveSyncDurationCount: 3 });
      this.hls = hls;
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (data.fatal) this._failed();
      });
      hls.loadSource(url);
      hls.attachMedia(this.video);
      this.video.play().catch(() => {});
    } catch {
      this._failed();
    }
  }

  async _startWhep() {
    this.mode = "whep";
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const media = new MediaStream();
    pc.addEventListener("track", (event) => {
      media.addTrack(event.track);
      this.video.srcObject = media;
      this.video.play().catch(() => {});
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc === this.pc && pc.connectionState === "failed") this._failed();
    });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, 2000);
      const response = await fetch(this.stream.whep_url, {
        method: "POST",
        headers: { "Content-Type": "application/sdp", Authorization: `Bearer ${this.options.token()}` },
        body: pc.localDescription.sdp,
      });
      if (pc !== this.pc) return;
      if (!response.ok) throw new Error(`WHEP ${response.status}`);
      const location = response.headers.get("Location");
      this.whepLocation = location ? new URL(location, this.stream.whep_url).href : null;
      await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
    } catch {
      if (pc === this.pc) this._failed();
    }
  }

  _failed() {
    if (!this.mode) return;
    this.failed.add(this.mode);
    const other = this.mode === "hls" ? "whep" : "hls";
    const otherUrl = other === "hls" ? this.stream.hls_url : this.stream.whep_url;
    if (this.stream.state === "live" && otherUrl && !this.failed.has(other)) {
      this.start();
    } else {
      // Both failed (or there is only one): try again in a while, the playlist may have
      // been a moment early.
      this.failed.clear();
      this.stop();
      this._scheduleRetry();
    }
    this.render();
  }

  _scheduleRetry() {
    clearTimeout(this.retry);
    this.retry = setTimeout(() => {
      if (this.stream.state === "live") this.start();
    }, 3000);
  }
}

function gathered(pc, limitMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, limitMs);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}
