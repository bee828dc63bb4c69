"""The pages' message catalogue (clients/web/messages.json) covers what the pages ask of it.

Every message key named in the pages' modules and shells is in the catalogue in Dutch and
in English, the two languages have the same keys, and no text is empty. A key built at
run time (``t(`player.state.${state}`)``) must have at least one key under its prefix.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "clients" / "web"
CATALOGUE = json.loads((WEB / "messages.json").read_text("utf-8"))
SOURCES = [*sorted((WEB / "js").glob("*.js")), *sorted(WEB.glob("*.html"))]
KEY = r"[a-z_]+(?:\.[a-z_]+)+"
# t("key"), "data-k": "key", data-i18n="key", "data-k-label": "key", aria-label:key,
# titleKey: "key", and keys returned by lookup tables ("signin.error.closed").
LITERAL = re.compile(
    rf"""(?:\bt\(|data-k(?:-label)?"?:\s*|data-i18n="|Key:\s*|:\s*|\?\s*|\[)"({KEY})\""""
)
ATTR = re.compile(rf"aria-label:({KEY})")
TEMPLATE = re.compile(r"`([a-z_]+(?:\.[a-z_]+)*\.)\$\{")


def used() -> tuple[set[str], set[str]]:
    keys: set[str] = set()
    prefixes: set[str] = set()
    for path in SOURCES:
        text = path.read_text("utf-8")
        keys |= {k for k in LITERAL.findall(text) if k.split(".")[0] in PREFIXES}
        keys |= set(ATTR.findall(text))
        prefixes |= set(TEMPLATE.findall(text))
    return keys, prefixes


PREFIXES = {key.split(".")[0] for key in CATALOGUE["nl"]}


def test_both_languages_have_the_same_keys() -> None:
    assert set(CATALOGUE["nl"]) == set(CATALOGUE["en"])


def test_no_empty_message() -> None:
    empty = [(lang, k) for lang in ("nl", "en") for k, v in CATALOGUE[lang].items() if not v]
    assert empty == []


def test_every_key_the_pages_use_is_in_the_catalogue() -> None:
    keys, prefixes = used()
    assert len(keys) > 100, "the scan found too few keys: the pattern is broken"
    missing = sorted(k for k in keys if k not in CATALOGUE["nl"])
    assert missing == []
    empty_prefixes = sorted(
        p for p in prefixes if not any(k.startswith(p) for k in CATALOGUE["nl"])
    )
    assert empty_prefixes == []


def test_placeholders_match_between_languages() -> None:
    placeholder = re.compile(r"\{(\w+)\}")
    differ = [
        k
        for k, nl in CATALOGUE["nl"].items()
        if set(placeholder.findall(nl)) != set(placeholder.findall(CATALOGUE["en"][k]))
    ]
    assert differ == []
