// The organiser dashboard (/organise): the live view of the day (when this server has
// GET /api/v1/live), broadcaster tokens with the WHIP URL for OBS, links for moderators
// and others, hall QR links, invites, revocation and the audit log.

import { byId, h, replace } from "./dom.js";
import { lang, onLangChange, t } from "./i18n.js";
import { ApiError, api, claims, forget, token } from "./session.js";
import { startPage } from "./shell.js";

const LIVE_REFRESH_MS = 5000;

class Dashboard {
  constructor(programme, main) {
    this.programme = programme;
    this.main = main;
    this.issued = [];
    this.halls = [];
    this.revocations = [];
    this.audit = [];
    this.live = undefined; // undefined: not asked yet; null: the server has no live view
    this.status = h("p", { class: "form-note", role: "status" });
  }

  async start() {
    this.render();
    await Promise.all([this.loadLive(), this.loadHalls(), this.loadRevocations(), this.loadAudit()]);
    setInterval(() => this.loadLive(), LIVE_REFRESH_MS);
  }

  async call(fn, doneKey) {
    try {
      const result = await fn();
      if (doneKey) this.status.textContent = t(doneKey);
      return result;
    } catch (error) {
      this.status.textContent = error instanceof ApiError ? `${t("error.other")} (${error.message})` : String(error);
      if (error.code === "unauthorized") {
        forget();
      }
      return null;
    }
  }

  async loadLive() {
    try {
      this.live = await api("GET", "/api/v1/live");
    } catch (error) {
      // 404: this server has no live view yet; the rest of the dashboard works without it.
      this.live = error.status === 404 ? null : this.live ?? null;
    }
    this.renderLive();
  }

  async loadHalls() {
    const data = await this.call(() => api("GET", "/api/v1/halls"));
    if (data) this.halls = data.links;
    this.render();
  }

  async loadRevocations() {
    const data = await this.call(() => api("GET", "/api/v1/revocations"));
    if (data) this.revocations = data.revocations;
    this.render();
  }

  async loadAudit() {
    const data = await this.call(() => api("GET", "/api/v1/audit?limit=20"));
    if (data) this.audit = data.entries;
    this.render();
  }

  async issue(role, scopes, name, count = 1) {
    const data = await this.call(() => api("POST", "/api/v1/tokens", { role, scopes, name, count }), "org.issued");
    if (!data) return;
    for (const tok of data.tokens) this.issued.unshift({ ...tok, name });
    this.render();
  }

  async revoke(jti, expiresAt) {
    const body = { jti, reason: "organiser dashboard" };
    if (expiresAt) body.expires_at = expiresAt;
    await this.call(() => api("POST", "/api/v1/revocations", body), "org.revoked");
    await Promise.all([this.loadRevocations(), this.loadAudit()]);
  }

  render() {
    replace(this.main,
      h("h1", { text: t("org.title") }),
      this.status,
      this.liveSection = h("section", { class: "panel", "aria-labelledby": "live-h" }),
      this.broadcastSection(),
      this.linksSection(),
      this.hallSection(),
      this.invitesSection(),
      this.revokeSection(),
      this.auditSection());
    this.renderLive();
  }

  renderLive() {
    if (!this.liveSection) return;
    const live = this.live;
    let body;
    if (live === undefined) body = h("p", { class: "loading", text: t("loading") });
    else if (live === null) body = h("p", { class: "hint", text: t("org.live_missing") });
    else body = Array.isArray(live.stages) ? this.liveTables(live) : liveView(live);
    replace(this.liveSection, h("h2", { id: "live-h", text: t("org.live") }), body);
  }

  /** The live view (GET /api/v1/live, docs/protocol.md): stages, polls, backlog, alerts. */
  liveTables(live) {
    const title = (id) => this.programme.stages.find((s) => s.id === id)?.title || id;
    const pct = (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 100)} %`);
    const polls = live.polls || [];
    const alerts = live.alerts || [];
    return h("div", { class: "live" },
      h("p", { class: "hint", text: t("org.live_at", { time: new Date(live.at).toLocaleTimeString(lang() === "en" ? "en-GB" : "nl-BE") }) }),
      h("div", { class: "split" }, h("table", { class: "stack", "data-live": "stages" },
        h("caption", { text: t("org.live_stages") }),
        h("thead", {}, h("tr", {}, ["org.stage", "org.live_viewers", "org.live_peak", "org.live_attentive", "org.live_chat"].map((k) => h("th", { scope: "col", text: t(k) })))),
        h("tbody", {}, live.stages.map((s) => h("tr", { "data-stage": s.stage },
          h("th", { scope: "row", text: title(s.stage) }),
          h("td", { text: String(s.viewers) }),
          h("td", { text: s.peak === null || s.peak === undefined ? "–" : String(s.peak) }),
          h("td", { text: pct(s.attentive_share) }),
          h("td", { text: String(s.chat_per_minute ?? "–") })))))),
      polls.length ? h("div", { class: "split" }, h("table", { class: "stack", "data-live": "polls" },
        h("caption", { text: t("org.live_polls") }),
        h("thead", {}, h("tr", {}, ["mod.poll_question", "org.live_online", "org.live_hall", "org.live_participation"].map((k) => h("th", { scope: "col", text: t(k) })))),
        h("tbody", {}, polls.map((p) => h("tr", {},
          h("th", { scope: "row", text: p.question }),
          h("td", { text: String(p.voters_online) }),
          h("td", { text: String(p.voters_hall) }),
          h("td", { text: pct(p.participation) })))))) : null,
      live.backlog ? h("p", { text: t("org.live_backlog", { held: live.backlog.held_lines, questions: live.backlog.pending_questions }) }) : null,
      alerts.length ? h("ul", { class: "health" }, alerts.map((a) => h("li", {},
        h("strong", { text: title(a.stage) }), " ",
        h("span", { class: "alert", text: a.problems.map((x) => t(`health.${x}`)).join(", ") })))) : null);
  }

  broadcastSection() {
    const base = location.origin;
    const stages = this.programme.stages.filter((s) => s.kind === "stream" || s.kind === "radio");
    const tokens = this.issued.filter((x) => x.role === "broadcaster");
    return h("section", { class: "panel", "aria-labelledby": "bc-h" },
      h("h2", { id: "bc-h", text: t("org.broadcast") }),
      h("p", { class: "hint", text: t("org.broadcast_help") }),
      h("div", { class: "split" }, h("table", { class: "stack", "data-table": "broadcast" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col", text: t("org.stage") }), h("th", { scope: "col", text: t("org.whip_url") }), h("th", { scope: "col", text: t("org.token") }))),
        h("tbody", {}, stages.map((s) => {
          const tok = tokens.find((x) => x.scopes.includes(`stage:${s.id}`));
          return h("tr", { "data-stage": s.id },
            h("th", { scope: "row", text: s.title }),
            h("td", {}, h("code", { class: "secret", text: `${base}/whip/${s.id}` })),
            h("td", {}, tok ? secret(tok.token, t("org.token_for", { stage: s.title }))
              : h("button", { type: "button", class: "secondary", text: t("org.make_token"),
                "aria-label": t("org.make_token_for", { stage: s.title }),
                onclick: () => this.issue("broadcaster", [`stage:${s.id}`], `Regie ${s.title}`.slice(0, 80)) })));
        })))));
  }

  linksSection() {
    const role = h("select", { id: "link-role" },
      ["moderator", "viewer", "speaker", "captioner", "organiser"].map((r) => h("option", { value: r, text: t(`role.${r}`) })));
    const scope = h("select", { id: "link-scope" },
      h("option", { value: "*", text: t("org.all_stages") }),
      this.programme.stages.map((s) => h("option", { value: `stage:${s.id}`, text: s.title })));
    const name = h("input", { id: "link-name", maxlength: "80", autocomplete: "off" });
    const people = this.issued.filter((x) => x.role !== "broadcaster");
    // Staff to their consoles; anyone else to the stage of a one-stage link, else the start.
    const pageOf = (r, scopes) => {
      if (r === "moderator") return "/moderate";
      if (r === "organiser") return "/organise";
      const one = scopes.length === 1 && scopes[0].startsWith("stage:") ? scopes[0].slice(6) : null;
      return one ? `/stage/${one}` : "/";
    };
    return h("section", { class: "panel", "aria-labelledby": "links-h" },
      h("h2", { id: "links-h", text: t("org.links") }),
      h("p", { class: "hint", text: t("org.links_help") }),
      h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); this.issue(role.value, [scope.value], name.value.trim()); } },
        h("div", {}, h("label", { for: "link-role", text: t("org.role") }), role),
        h("div", {}, h("label", { for: "link-scope", text: t("org.scope") }), scope),
        h("div", {}, h("label", { for: "link-name", text: t("org.name") }), name),
        h("div", {}, h("button", { type: "submit", text: t("org.make_link") }))),
      people.length ? h("ul", { class: "issued" }, people.map((x) => h("li", {},
        h("p", {}, h("strong", { text: `${t(`role.${x.role}`)}${x.name ? ` · ${x.name}` : ""}` }), ` · ${x.scopes.join(", ")}`),
        secret(`${location.origin}${pageOf(x.role, x.scopes)}#token=${x.token}`, t("org.link_for", { name: x.name || x.role })),
        h("button", { type: "button", class: "danger", text: t("org.revoke"), onclick: () => this.revoke(x.jti, x.expires_at) })))) : null);
  }

  hallSection() {
    // A QR code for a stage's hall (vote and ask) or a check-in code for a workshop or a
    // walk held on site (the scan is the check-in the report counts).
    const stages = this.programme.stages.filter((s) => s.kind !== "film");
    const onSite = this.programme.sessions.filter((s) => s.kind === "workshop" || s.kind === "walk");
    const chosen = this.hallPlace?.value;
    const place = this.hallPlace = h("select", { id: "hall-place" },
      h("optgroup", { label: t("org.hall_stages") }, stages.map((s) => h("option", { value: `stage:${s.id}`, text: s.title }))),
      onSite.length ? h("optgroup", { label: t("org.hall_sessions") }, onSite.map((s) => h("option", { value: `session:${s.id}`, text: s.title }))) : null);
    if (chosen) place.value = chosen; // the choice survives a redraw
    const placeTitle = (l) => l.stage
      ? this.programme.stages.find((s) => s.id === l.stage)?.title || l.stage
      : `${t("org.checkin_mark")}: ${this.programme.sessions.find((s) => s.id === l.session)?.title || l.session}`;
    return h("section", { class: "panel", "aria-labelledby": "hall-h" },
      h("h2", { id: "hall-h", text: t("org.halls") }),
      h("p", { class: "hint", text: t("org.halls_help") }),
      h("form", { class: "row", onsubmit: async (e) => {
        e.preventDefault();
        const [kind, id] = place.value.split(":");
        const path = kind === "stage" ? `/api/v1/halls/${encodeURIComponent(id)}/links` : `/api/v1/halls/sessions/${encodeURIComponent(id)}/links`;
        const link = await this.call(() => api("POST", path, {}), "org.hall_made");
        if (link) { this.lastQr = link; await this.loadHalls(); }
      } },
        h("div", {}, h("label", { for: "hall-place", text: t("org.place") }), place),
        h("div", {}, h("button", { type: "submit", text: t("org.make_hall") }))),
      this.lastQr ? h("figure", {},
        // The server's QR code is an SVG it drew itself from the link: shown as an image
        // (a data: URL), never inserted as markup.
        h("img", { class: "qr", alt: t("org.qr_alt", { link: this.lastQr.link }), src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(this.lastQr.qr_svg)}` }),
        h("figcaption", {}, secret(this.lastQr.link, t("org.hall_link")))) : null,
      this.halls.length ? h("ul", {}, this.halls.map((l) => h("li", {},
        `${placeTitle(l)} · ${l.code}${l.revoked ? ` · ${t("org.revoked_mark")}` : ""} `,
        l.revoked ? null : h("button", { type: "button", class: "link", text: t("org.revoke"),
          onclick: async () => { await this.call(() => api("DELETE", `/api/v1/halls/links/${l.link_id}`), "org.revoked"); await this.loadHalls(); } })))) : null);
  }

  invitesSection() {
    // Kept across redraws (the dashboard redraws when the audit log reloads): a file
    // chosen just before a redraw must still be there when "Inlezen" is pressed.
    const file = this.invFile || (this.invFile = h("input", { type: "file", id: "inv-file", accept: ".csv,text/csv", "aria-describedby": "inv-help" }));
    const note = this.invNote || (this.invNote = h("p", { class: "form-note", role: "status", id: "inv-note" }));
    const importCsv = async (event) => {
      event.preventDefault();
      const chosen = file.files[0];
      if (!chosen) {
        note.textContent = t("org.inv_pick");
        return;
      }
      const result = await this.call(() => apiText("POST", "/api/v1/invites/import", chosen));
      if (result) {
        note.textContent = t("org.inv_imported", { created: result.created, existing: result.existing });
        this.loadAudit();
      }
    };
    const exportCsv = async () => {
      const response = await this.call(() => apiText("GET", "/api/v1/invites/export"));
      if (!response) return;
      // A download without putting the token in a URL: the CSV is fetched with the header
      // and handed to the browser as a blob.
      const url = URL.createObjectURL(new Blob([response], { type: "text/csv" }));
      const a = h("a", { href: url, download: "uitnodigingen.csv" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      note.textContent = t("org.inv_exported");
    };
    const downloadReport = async () => {
      const html = await this.call(() => apiText("GET", `/api/v1/report?lang=${lang()}`));
      if (!html) return;
      // As the invite links: fetched with the token in the header, handed over as a blob.
      const url = URL.createObjectURL(new Blob([html], { type: "text/html" }));
      const a = h("a", { href: url, download: t("org.report_file") });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      note.textContent = t("org.report_downloaded");
    };
    return h("section", { class: "panel", "aria-labelledby": "inv-h" },
      h("h2", { id: "inv-h", text: t("org.invites") }),
      h("p", { id: "inv-help", class: "hint", text: t("org.invites_help") }),
      h("form", { class: "row", onsubmit: importCsv },
        h("div", {}, h("label", { for: "inv-file", text: t("org.inv_file") }), file),
        h("div", {}, h("button", { type: "submit", text: t("org.inv_import") }))),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", text: t("org.inv_export"), onclick: exportCsv })),
      note,
      h("p", { class: "hint", text: t("org.report_help") }),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", text: t("org.report_download"), onclick: downloadReport })));
  }

  revokeSection() {
    const jti = h("input", { id: "rev-jti", maxlength: "128", autocomplete: "off" });
    return h("section", { class: "panel", "aria-labelledby": "rev-h" },
      h("h2", { id: "rev-h", text: t("org.revocation") }),
      h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); if (jti.value.trim()) this.revoke(jti.value.trim()); } },
        h("div", {}, h("label", { for: "rev-jti", text: t("org.jti") }), jti),
        h("div", {}, h("button", { type: "submit", class: "danger", text: t("org.revoke") }))),
      this.revocations.length ? h("ul", {}, this.revocations.map((r) => h("li", { class: "secret", text: `${r.jti} · ${r.revoked_at}${r.reason ? ` · ${r.reason}` : ""}` })))
        : h("p", { class: "empty", text: t("org.no_revocations") }));
  }

  auditSection() {
    return h("section", { class: "panel", "aria-labelledby": "audit-h" },
      h("h2", { id: "audit-h", text: t("org.audit") }),
      this.audit.length ? h("div", { class: "split" }, h("table", { class: "stack" },
        h("thead", {}, h("tr", {}, ["org.when", "org.who", "org.what", "org.target"].map((k) => h("th", { scope: "col", text: t(k) })))),
        h("tbody", {}, this.audit.map((e) => h("tr", {},
          h("td", { text: new Date(e.ts).toLocaleString(lang() === "en" ? "en-GB" : "nl-BE") }), h("td", { text: `${e.actor} (${e.actor_role})` }),
          h("td", { text: e.action }), h("td", { text: e.target || "" }))))))
        : h("p", { class: "empty", text: t("org.no_audit") }));
  }
}

/**
 * The API with a CSV body or answer: a File/Blob goes up as text/csv; a CSV answer comes
 * back as text, a JSON one as an object. Throws ApiError like api().
 */
async function apiText(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body) headers["Content-Type"] = "text/csv";
  const response = await fetch(path, { method, headers, body });
  const type = response.headers.get("Content-Type") || "";
  if (!response.ok) {
    const error = (await response.json().catch(() => ({}))).error || {};
    throw new ApiError(error.code || "internal", error.message || response.statusText, response.status);
  }
  return type.startsWith("application/json") ? response.json() : response.text();
}

/** A token or link: read-only text to select, and a copy button. */
function secret(value, labelText) {
  const input = h("input", { readonly: true, value, class: "secret", "aria-label": labelText });
  return h("div", { class: "row" }, input,
    h("button", { type: "button", class: "secondary", text: t("org.copy"), onclick: async (e) => {
      input.select();
      try { await navigator.clipboard.writeText(value); e.currentTarget.textContent = t("org.copied"); } catch { /* selected for copying by hand */ }
    } }));
}

/**
 * The live view, drawn from whatever GET /api/v1/live returns: its numbers as a list,
 * and each list of objects (per stage, per poll) as a table. It does not assume more of
 * the shape, so it keeps working as that endpoint grows.
 */
function liveView(live) {
  const scalars = Object.entries(live).filter(([, v]) => v === null || typeof v !== "object");
  const tables = Object.entries(live).filter(([, v]) => Array.isArray(v) && v.length && typeof v[0] === "object");
  const objects = Object.entries(live).filter(([, v]) => v && typeof v === "object" && !Array.isArray(v));
  return h("div", { class: "live" },
    scalars.length ? h("dl", {}, scalars.flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: String(v) })])) : null,
    objects.map(([k, v]) => h("div", {}, h("h3", { text: k }),
      h("dl", {}, Object.entries(v).flatMap(([kk, vv]) => [h("dt", { text: kk }), h("dd", { text: typeof vv === "object" ? JSON.stringify(vv) : String(vv) })])))),
    tables.map(([k, rows]) => {
      const cols = Object.keys(rows[0]);
      return h("div", { class: "split", "data-live": k }, h("table", {},
        h("caption", { text: k }),
        h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col", text: c })))),
        h("tbody", {}, rows.map((row) => h("tr", {}, cols.map((c) => h("td", { text: typeof row[c] === "object" ? JSON.stringify(row[c]) : String(row[c]) })))))));
    }));
}

async function main() {
  const { programme } = await startPage(() => t("org.title"));
  const main = byId("main");
  const c = claims();
  if (!c || c.role !== "organiser") {
    replace(main, h("section", { class: "panel" }, h("h1", { text: t("org.title") }),
      h("p", { text: t(c ? "staff.not_organiser" : "staff.need_link") })));
    return;
  }
  // Who is signed in, in the page's language (a token without a name shows its role).
  const signedIn = () => { byId("conn").textContent = t("org.signed_in_as", { name: c.name || t(`role.${c.role}`) }); };
  signedIn();
  onLangChange(signedIn);
  const signout = byId("signout");
  signout.hidden = false;
  signout.addEventListener("click", () => { forget(); location.assign("/"); });
  const dash = new Dashboard(programme, main);
  onLangChange(() => dash.render());
  await dash.start();
}

main().catch((error) => {
  const main = document.getElementById("main");
  if (main) replace(main, h("p", { class: "problem", role: "alert", text: `${error}` }));
});
