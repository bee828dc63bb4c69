// /join#code=… (the invite link of the ticketing e-mail) and /hall#code=… (the QR code in
// a hall): take the code from the fragment, trade it for a token, go to the page.

import { byId, replace } from "./dom.js";
import { onLangChange } from "./i18n.js";
import { checkedIn, redeem, redeemErrorKey, takeFragment } from "./session.js";
import { signInForm, startPage } from "./shell.js";

async function main() {
  const { fragment: { code } } = await startPage((p) => p.event.tagline || "");
  const hall = location.pathname === "/hall";
  const form = signInForm({
    code,
    titleKey: hall ? "signin.hall_title" : "signin.title",
    redeem: (c) => redeem(c, hall ? "hall" : "invite"),
    errorKey: redeemErrorKey,
    // A hall phone goes straight to its stage; a workshop's or walk's check-in and an
    // attendee to the programme (which confirms the check-in).
    onSignedIn: (data) => {
      const [kind, id] = (data.topic || "").split(":");
      if (kind === "session") checkedIn(id);
      location.replace(kind === "stage" ? `/stage/${id}` : "/");
    },
  });
  replace(byId("main"), form.root);
  onLangChange(() => form.redraw());
  const submit = () => form.root.querySelector("form").requestSubmit();
  if (code) submit();
  else form.input.focus();
  // A link opened in a tab that already shows this page changes only the fragment.
  window.addEventListener("hashchange", () => {
    const again = takeFragment();
    if (again.code) {
      form.input.value = again.code;
      submit();
    }
  });
}

main();
