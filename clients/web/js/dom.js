// Building DOM without HTML strings. Everything a person typed (chat lines, questions,
// names, poll answers) reaches the page through text nodes only, so it can never be
// markup, whatever it contains.

/**
 * Make an element.
 * @param {string} tag
 * @param {Object<string, any>} [attrs] attributes; `on<event>` functions become
 *   listeners, `text` becomes the text content, booleans toggle the attribute.
 * @param {...(Node|string|number|null|undefined|false)} children strings become text nodes.
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      el.textContent = String(value);
    } else if (name === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, ...children);
  return el;
}

/** Append children (strings as text nodes; null, undefined and false skipped). */
export function append(parent, ...children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace all children of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, ...children);
}

/** The element with this id (throws when the shell lacks it: a bug, not a state). */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`the page has no #${id}`);
  return el;
}

/** Time of day in the event's time zone, as people read it. */
export function clock(iso, lang, timeZone = "Europe/Brussels") {
  return new Date(iso).toLocaleTimeString(lang === "en" ? "en-GB" : "nl-BE", {
    hour: "2-digit", minute: "2-digit", timeZone,
  });
}
