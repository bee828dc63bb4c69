// Camera, microphone and the other people's feeds in an online workshop or at a
// networking table or pairing, over the media routes (docs/protocol.md, "Zoom-style
// sessions' media" and "Networking tables' and pairings' media"): publish with an SDP
// offer, watch a feed by answering the server's offer. The server decides who may
// publish (the floor, the seat); this module only reports what it answers.

import { ApiError, token } from "./session.js";

const GATHER_MS = 3000;

/** Wait until `pc` has gathered its ICE candidates (the routes do not trickle). */
function gathered(pc) {
  return new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHER_MS);
  });
}

/** An HTTP error answer as ApiError (the JSON error body, else the status line). */
async function refusal(response) {
  const data = await response.json().catch(() => ({}));
  const error = data.error || {};
  return new ApiError(error.code || "internal", error.message || response.statusText, response.status);
}

/** The media routes' prefix of a networking table's or pairing's room (`net~t1`). */
export function networkBase(room) {
  return `/api/v1/network/${encodeURIComponent(room)}`;
}

/**
 * The media of one person in one session (or, with `base`, under another prefix of the
 * media routes: a networking room's, networkBase()).
 * Events: "feed" {participant, stream} when a feed's tracks arrive, "feedgone"
 * {participant} when it ends, "local" {stream|null} when the own camera starts or stops.
 */
export class RoomMedia extends EventTarget {
  constructor(session, base = `/api/v1/sessions/${encodeURIComponent(session)}`) {
    super();
    this.session = session;
    this.base = base; // null: in no room now (move() to one)
    this.local = null; // MediaStream of the chosen camera and microphone
    this.publisher = null; // {pc, location}
    this.feeds = new Map(); // participant -> {pc, location, stream}
    this.iceServers = null;
    this.syncing = null;
  }

  async _fetch(method, path, body, contentType) {
    const headers = { Authorization: `Bearer ${token()}` };
    if (contentType) headers["Content-Type"] = contentType;
    let response;
    try {
      response = await fetch(path, { method, headers, body });
    } catch {
      throw new ApiError("offline", "network", 0);
    }
    if (!response.ok) throw await refusal(response);
    return response;
  }

  async _ice() {
    if (!this.iceServers) {
      const data = await (await this._fetch("GET", `${this.base}/ice`)).json();
      this.iceServers = data.ice_servers || [];
    }
    return this.iceServers;
  }

  /** The cameras and microphones (their names only after permission was given). */
  static async devices() {
    const all = await navigator.mediaDevices.enumerateDevices();
    return {
      cameras: all.filter((d) => d.kind === "videoinput"),
      microphones: all.filter((d) => d.kind === "audioinput"),
    };
  }

  /** Start (or switch) the camera and microphone; a publish in progress gets the new tracks. */
  async start(cameraId, microphoneId) {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: { width: 640, height: 360, ...(cameraId ? { deviceId: { exact: cameraId } } : {}) },
      audio: microphoneId ? { deviceId: { exact: microphoneId } } : true,
    });
    const old = this.local;
    this.local = stream;
    if (this.publisher) {
      for (const sender of this.publisher.pc.getSenders()) {
        const kind = sender.track?.kind;
        const next = kind && stream.getTracks().find((t) => t.kind === kind);
        if (next) await sender.replaceTrack(next);
      }
    }
    if (old) for (const track of old.getTracks()) track.stop();
    this.dispatchEvent(new CustomEvent("local", { detail: { stream } }));
    return stream;
  }

  /** Stop the camera and microphone (and publishing). */
  async stop() {
    await this.unpublish();
    if (this.local) for (const track of this.local.getTracks()) track.stop();
    this.local = null;
    this.dispatchEvent(new CustomEvent("local", { detail: { stream: null } }));
  }

  /** Turn the own microphone or camera on or off (the track stays, sending silence/black). */
  setEnabled(kind, on) {
    if (!this.local) return;
    for (const track of this.local.getTracks()) if (track.kind === kind) track.enabled = on;
  }

  enabled(kind) {
    const track = this.local?.getTracks().find((t) => t.kind === kind);
    return !!track && track.enabled;
  }

  get publishing() {
    return this.publisher !== null;
  }

  /**
   * Publish the camera and microphone to the room. Throws ApiError: 403 `forbidden`
   * without the floor, 409 when the room is full of publishers, …
   */
  async publish() {
    if (!this.local) throw new ApiError("invalid", "no camera", 0);
    await this.unpublish();
    const pc = new RTCPeerConnection({ iceServers: await this._ice() });
    const video = this.local.getVideoTracks()[0];
    const audio = this.local.getAudioTracks()[0];
    if (video) {
      const transceiver = pc.addTransceiver(video, { direction: "sendonly" });
      // H.264 first: every watcher's browser decodes it, and the server forwards it as is.
      const codecs = RTCRtpSender.getCapabilities("video")?.codecs || [];
      const h264 = codecs.filter((c) => c.mimeType === "video/H264" && /packetization-mode=1/.test(c.sdpFmtpLine || ""));
      if (h264.length && transceiver.setCodecPreferences) {
        transceiver.setCodecPreferences([...h264, ...codecs.filter((c) => !h264.includes(c))]);
      }
    }
    if (audio) pc.addTransceiver(audio, { direction: "sendonly" });
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const response = await this._fetch("POST", `${this.base}/publish`, pc.localDescription.sdp, "application/sdp");
      const location = response.headers.get("Location");
      await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
      this.publisher = { pc, location };
    } catch (error) {
      pc.close();
      throw error;
    }
  }

  /** Stop publishing (the camera stays on for the preview). */
  async unpublish() {
    const p = this.publisher;
    if (!p) return;
    this.publisher = null;
    p.pc.close();
    if (p.location) await this._fetch("DELETE", p.location).catch(() => {});
  }

  /**
   * Watch what is published in the person's room now: new feeds are subscribed, ended
   * ones dropped. `me` is the person's own id (not watched).
   */
  sync(me) {
    // One sync at a time; a request while one runs runs once more after it.
    if (this.syncing) {
      this.again = true;
      return this.syncing;
    }
    this.syncing = this._sync(me).finally(() => {
      this.syncing = null;
      if (this.again) {
        this.again = false;
        this.sync(me).catch(() => {});
      }
    });
    return this.syncing;
  }

  async _sync(me) {
    const data = await (await this._fetch("GET", `${this.base}/feeds`)).json();
    const live = new Set(data.feeds.filter((f) => f.participant !== me && (f.audio || f.video)).map((f) => f.participant));
    for (const participant of [...this.feeds.keys()]) {
      const feed = this.feeds.get(participant);
      const ended = ["failed", "closed"].includes(feed.pc.connectionState);
      if (!live.has(participant) || ended) this._drop(participant);
    }
    for (const participant of live) {
      if (this.feeds.has(participant)) continue;
      await this._watch(participant).catch(() => this._drop(participant));
    }
  }

  async _watch(participant) {
    const pc = new RTCPeerConnection({ iceServers: await this._ice() });
    const feed = { pc, location: null, stream: new MediaStream() };
    this.feeds.set(participant, feed);
    pc.addEventListener("track", (event) => {
      feed.stream.addTrack(event.track);
      this.dispatchEvent(new CustomEvent("feed", { detail: { participant, stream: feed.stream } }));
      // The publisher stopped (or was stopped): the server ends the track.
      event.track.addEventListener("ended", () => {
        if (this.feeds.get(participant) === feed) this._drop(participant);
      });
    });
    const response = await this._fetch("POST", `${this.base}/feeds/${encodeURIComponent(participant)}`);
    feed.location = response.headers.get("Location");
    await pc.setRemoteDescription({ type: "offer", sdp: await response.text() });
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    await this._fetch("PATCH", feed.location, pc.localDescription.sdp, "application/sdp");
  }

  _drop(participant) {
    const feed = this.feeds.get(participant);
    if (!feed) return;
    this.feeds.delete(participant);
    feed.pc.close();
    if (feed.location) this._fetch("DELETE", feed.location).catch(() => {});
    this.dispatchEvent(new CustomEvent("feedgone", { detail: { participant } }));
  }

  /** Stop watching everyone (leaving the room, moving to a breakout group). */
  dropAll() {
    for (const participant of [...this.feeds.keys()]) this._drop(participant);
  }

  /**
   * Go to the room under another prefix (null: none): what was watched and published
   * in the old one ends; the camera stays on.
   */
  async move(base) {
    this.dropAll();
    await this.unpublish();
    this.base = base;
  }

  /** participant -> audio level (0…1) of their arriving sound, for the active speaker. */
  async levels() {
    const out = new Map();
    for (const [participant, feed] of this.feeds) {
      try {
        const stats = await feed.pc.getStats();
        stats.forEach((s) => {
          if (s.type === "inbound-rtp" && s.kind === "audio" && typeof s.audioLevel === "number") {
            out.set(participant, s.audioLevel);
          }
        });
      } catch {
        // a connection closing between the loop and getStats: no level
      }
    }
    return out;
  }
}
