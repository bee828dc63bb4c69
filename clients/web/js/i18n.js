// One message catalogue (messages.json) for every page, Dutch first, English second.
// The language is the person's choice, kept in localStorage; Dutch by default because the
// conference is Flemish. Text marked in the HTML shells with data-i18n="key" (content) or
// data-i18n-attr="attr:key,attr:key" is filled in by applyStatic().

const LANGS = ["nl", "en"];
let catalogue = { nl: {}, en: {} };
let current = "nl";
const listeners = new Set();

/** Load the catalogue and the saved language; call once before rendering. */
export async function loadMessages() {
  const response = await fetch("/static/messages.json", { cache: "no-cache" });
  catalogue = await response.json();
  const saved = localStorage.getItem("hybridcon.lang");
  current = LANGS.includes(saved) ? saved : "nl";
  document.documentElement.lang = current;
}

/** The current language code. */
export function lang() {
  return current;
}

/**
 * A message in the current language, with {name} placeholders filled in (as text).
 * A missing key falls back to Dutch, then to the key itself, so a gap shows, not breaks.
 */
export function t(key, vars = {}) {
  // A count of one may have its own form ("1 stem", not "1 stemmen"): `<key>.one`.
  const one = vars.n === 1 ? catalogue[current]?.[`${key}.one`] : undefined;
  const text = one ?? catalogue[current]?.[key] ?? catalogue.nl?.[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** Switch language: the shells' static text changes at once, listeners redraw the rest. */
export function setLang(code) {
  if (!LANGS.includes(code)) return;
  current = code;
  localStorage.setItem("hybridcon.lang", code);
  document.documentElement.lang = code;
  applyStatic(document);
  for (const fn of listeners) fn(code);
}

/** Call `fn` after every language switch. */
export function onLangChange(fn) {
  listeners.add(fn);
}

/** Fill in the data-i18n texts and attributes under `root`. */
export function applyStatic(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll("[data-i18n-attr]")) {
    for (const pair of el.dataset.i18nAttr.split(",")) {
      const [attr, key] = pair.split(":");
      el.setAttribute(attr.trim(), t(key.trim()));
    }
  }
  const title = document.querySelector("meta[name=page-title]");
  if (title) document.title = t(title.content);
}

/** Wire a language switch button: it names the other language, in that language. */
export function languageButton(button) {
  const draw = () => {
    const other = current === "nl" ? "en" : "nl";
    button.textContent = other === "en" ? "English" : "Nederlands";
    button.lang = other;
    button.setAttribute("aria-label", other === "en" ? "Switch to English" : "Schakel naar Nederlands");
  };
  button.addEventListener("click", () => setLang(current === "nl" ? "en" : "nl"));
  onLangChange(draw);
  draw();
}
