// What every page shares: its start, the connection badge and the sign-in form.

import { byId, h, replace } from "./dom.js";
import { applyStatic, languageButton, loadMessages, onLangChange, t } from "./i18n.js";
import { loadProgramme } from "./programme.js";
import { Realtime } from "./realtime.js";
import { claims, forget, redeem, redeemErrorKey, takeFragment, token } from "./session.js";

/**
 * What every page does first: take the token or code from the address's fragment (and
 * remove it), load the programme and the messages, fill the page's static texts, the
 * language switch and the header.
 * @param {(programme: object) => string} tagline  the header's second line
 * @returns {Promise<{programme: object, fragment: {code?: string|null}}>}
 */
export async function startPage(tagline) {
  const fragment = takeFragment();
  const [programme] = await Promise.all([loadProgramme(), loadMessages()]);
  applyStatic(document);
  languageButton(byId("lang"));
  byId("event-title").textContent = programme.event.title;
  const drawTagline = () => { byId("event-tagline").textContent = tagline(programme); };
  drawTagline();
  onLangChange(drawTagline); // a page's own line ("Moderatie") follows the switch
  return { programme, fragment };
}

/**
 * Show the connection state in words in `el` (a role=status element). On "signedout"
 * (the token expired or was revoked) `onSignedOut` is offered as a button.
 */
export function connectionBadge(rt, el, onSignedOut) {
  let last = "connecting";
  const draw = () => {
    const status = last;
    el.dataset.status = status;
    if (status === "signedout") {
      replace(el, t("conn.signedout"), " ",
        h("button", { type: "button", class: "link", text: t("conn.signin_again"), onclick: onSignedOut }));
    } else {
      replace(el, t(`conn.${status}`));
    }
  };
  rt.addEventListener("status", (event) => {
    last = event.detail.status;
    draw();
  });
  onLangChange(draw);
  draw();
  return { redraw: draw };
}

/**
 * The sign-in form: the invite code from the ticketing e-mail.
 * @param {{code?: string|null, redeem: (code: string) => Promise<object>,
 *          onSignedIn: (data: object) => void, errorKey: (e: Error) => string,
 *          titleKey?: string}} options
 */
export function signInForm(options) {
  const input = h("input", {
    id: "code", name: "code", autocomplete: "one-time-code", autocapitalize: "characters",
    spellcheck: "false", required: true, "aria-describedby": "code-help code-error",
  });
  if (options.code) input.value = options.code;
  const error = h("p", { id: "code-error", class: "form-error", role: "alert" });
  const button = h("button", { type: "submit" });
  const heading = h("h1", { id: "signin-h" });
  const intro = h("p", { class: "lead" });
  const labelEl = h("label", { for: "code" });
  const help = h("p", { id: "code-help", class: "hint" });
  const root = h("section", { class: "panel signin", "aria-labelledby": "signin-h" },
    heading, intro,
    h("form", {
      onsubmit: async (event) => {
        event.preventDefault();
        error.textContent = "";
        button.disabled = true;
        try {
          options.onSignedIn(await options.redeem(input.value));
        } catch (e) {
          error.textContent = t(options.errorKey(e));
          input.setAttribute("aria-invalid", "true");
          input.focus();
        } finally {
          button.disabled = false;
        }
      },
    }, labelEl, help, input, button, error));
  const redraw = () => {
    heading.textContent = t(options.titleKey || "signin.title");
    intro.textContent = t("signin.intro");
    labelEl.textContent = t("signin.label");
    help.textContent = t("signin.help");
    button.textContent = t("signin.submit");
  };
  redraw();
  return { root, redraw, input };
}

/**
 * A page for signed-in people: without a token, the invite sign-in form in `main` and
 * null; with one, its Realtime connection (not yet connected) with the connection badge
 * and the sign-out button.
 * @param {HTMLElement} main
 * @param {string|null|undefined} code  an invite code from the fragment
 * @param {string} [path]  the gateway's path (see Realtime)
 * @returns {Realtime|null}
 */
export function connectOrSignIn(main, code, path = "/ws") {
  if (!claims()) {
    const signIn = signInForm({
      code, onSignedIn: () => location.reload(), redeem: (c) => redeem(c, "invite"), errorKey: redeemErrorKey,
    });
    replace(main, signIn.root);
    onLangChange(() => signIn.redraw());
    return null;
  }
  return signedInConnection(path);
}

/**
 * The signed-in person's Realtime connection (not yet connected), with the connection
 * badge and the sign-out button.
 * @param {string} [path]  the gateway's path (see Realtime)
 * @returns {Realtime}
 */
export function signedInConnection(path = "/ws") {
  const rt = new Realtime(token, path);
  connectionBadge(rt, byId("conn"), () => {
    forget();
    location.reload();
  });
  const signout = byId("signout");
  signout.hidden = false;
  signout.addEventListener("click", () => {
    rt.close();
    forget();
    location.assign("/");
  });
  return rt;
}
