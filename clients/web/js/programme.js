// The programme of the day (GET /api/v1/programme): now and next per stage, and the
// whole day grouped as people look for it: streamed, online workshops, on site.

import { clock, h } from "./dom.js";
import { lang, t } from "./i18n.js";

let cached = null;

/** The programme, fetched once per page. */
export async function loadProgramme() {
  if (!cached) {
    const response = await fetch("/api/v1/programme");
    cached = await response.json();
  }
  return cached;
}

/** The page path of a stage. */
export function stagePath(stage) {
  if (stage.kind === "radio") return "/radio";
  if (stage.kind === "film") return "/films";
  return `/stage/${encodeURIComponent(stage.id)}`;
}

/** {now, next} sessions of `stageId` at time `at` (a Date). */
export function nowNext(programme, stageId, at = new Date()) {
  const sessions = programme.sessions.filter((s) => s.stage === stageId);
  const now = sessions.find((s) => new Date(s.starts_at) <= at && at < new Date(s.ends_at)) || null;
  const next = sessions.find((s) => new Date(s.starts_at) > at) || null;
  return { now, next };
}

function span(session) {
  const l = lang();
  return `${clock(session.starts_at, l)}–${clock(session.ends_at, l)}`;
}

/** Where the day stands at `at`: "before", "during" or "after". */
export function dayPhase(programme, at = new Date()) {
  const starts = programme.sessions.map((s) => new Date(s.starts_at));
  const ends = programme.sessions.map((s) => new Date(s.ends_at));
  if (at < new Date(Math.min(...starts))) return "before";
  if (at >= new Date(Math.max(...ends))) return "after";
  return "during";
}

/**
 * What is on a stage, as lines: "now" and "next" during the day; outside it (the
 * conference is one day) the stage's sessions of that day, so the card still says something.
 */
export function stageLines(programme, stage, at = new Date()) {
  const line = (label, session) =>
    h("p", { class: "nownext" },
      h("span", { class: "label", text: label }), " ",
      session ? `${session.title} (${span(session)})` : t("programme.nothing"));
  if (dayPhase(programme, at) !== "during") {
    const sessions = programme.sessions.filter((s) => s.stage === stage.id).slice(0, 3);
    if (!sessions.length) return [line(t("programme.on_stage"), null)];
    return [
      h("p", { class: "nownext" }, h("span", { class: "label", text: t("programme.on_stage") })),
      h("ul", { class: "stage-sessions" }, sessions.map((s) => h("li", { text: `${span(s)} ${s.title}` }))),
    ];
  }
  const { now, next } = nowNext(programme, stage.id, at);
  return [line(t("programme.now"), now), line(t("programme.next"), next)];
}

/** One stage's card: its title and what is on (stageLines), as a link. */
export function stageCard(programme, stage, at = new Date()) {
  return h("li", { class: "stage-card" },
    h("h3", {}, h("a", { href: stagePath(stage), text: stage.title })),
    h("p", { class: "kind", text: t(`stage.kind.${stage.kind}`) }),
    stageLines(programme, stage, at));
}

function sessionItem(programme, session) {
  const stage = programme.stages.find((s) => s.id === session.stage);
  const theme = programme.themes.find((th) => th.id === session.theme);
  let where;
  if (session.online === "stream" && stage) where = h("a", { href: stagePath(stage), text: stage.title });
  else if (session.online === "room") {
    where = h("a", { href: `/session/${encodeURIComponent(session.id)}`, text: t("programme.open_room") });
  }
  else where = session.location || t("programme.on_site");
  return h("li", { class: "session" },
    h("span", { class: "time", text: span(session) }), " ",
    h("strong", { text: session.title }),
    session.online === "none" ? h("span", { class: "badge onsite", text: t("programme.on_site") }) : null,
    session.online === "room" ? h("span", { class: "badge online", text: t("programme.online") }) : null,
    h("br"),
    h("span", { class: "where" }, where),
    theme ? h("span", { class: "theme", text: ` · ${t("programme.theme")}: ${theme.title}` }) : null);
}

/** The whole day, in groups: streamed and radio, online workshops, on site. */
export function dayProgramme(programme) {
  const groups = [
    ["programme.group.streamed", (s) => s.online === "stream"],
    ["programme.group.online", (s) => s.online === "room"],
    ["programme.group.onsite", (s) => s.online === "none" && s.kind !== "break"],
  ];
  return h("div", { class: "day" },
    groups.map(([key, keep]) => {
      const items = programme.sessions.filter(keep);
      if (!items.length) return null;
      return h("section", { class: "group", "aria-labelledby": `g-${key}` },
        h("h3", { id: `g-${key}`, text: t(key) }),
        h("ul", { class: "sessions" }, items.map((s) => sessionItem(programme, s))));
    }),
    h("section", { class: "group", "aria-labelledby": "g-themes" },
      h("h3", { id: "g-themes", text: t("programme.themes") }),
      h("ul", { class: "themes" }, programme.themes.map((th) =>
        h("li", {}, h("strong", { text: th.title }), " ", th.description || "")))));
}
