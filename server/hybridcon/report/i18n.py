"""The report's words in Dutch (the default) and English."""

from __future__ import annotations

from typing import Final

LANGS: Final = ("nl", "en")

_WORDS: Final[dict[str, tuple[str, str]]] = {
    # headings and notes
    "report": ("Rapport", "Report"),
    "range": ("Periode", "Range"),
    "events": ("gebeurtenissen in het logboek", "events in the log"),
    "k_note": (
        "Cellen met minder dan {k} personen zijn verborgen ({mark}).",
        "Cells counting fewer than {k} people are hidden ({mark}).",
    ),
    "unknown": (
        "Genegeerd: gebeurtenissen van onbekende soort: {kinds}.",
        "Ignored: events of unknown kinds: {kinds}.",
    ),
    "definitions": (
        "Definities: zie docs/report-definitions.md (kolom R-nummers).",
        "Definitions: see docs/report-definitions.md (the R numbers).",
    ),
    "concurrency_chart": ("Gelijktijdige kijkers per podium", "Concurrent viewers per stage"),
    "watch_chart": ("Kijktijd (dag), personen per klasse", "Watch time (day), people per bin"),
    "none": ("geen gegevens", "no data"),
    "generated": ("Gemaakt", "Generated"),
    # tables
    "t_reach": (
        "Bereik en aandacht: dag, podia, thema's",
        "Reach and attention: day, stages, themes",
    ),
    "t_items": ("Programma-onderdelen", "Programme items"),
    "t_online_workshops": ("Online workshops", "Online workshops"),
    "t_watch_time": ("Kijktijd per persoon", "Watch time per person"),
    "t_retention": ("Behoud per onderdeel", "Retention per item"),
    "t_concurrency": ("Gelijktijdige kijkers per minuut", "Concurrent viewers per minute"),
    "t_chat": ("Chat en vragen", "Chat and questions"),
    "t_moderation": ("Moderatie", "Moderation"),
    "t_reactions": ("Reacties per 5 minuten", "Reactions per 5 minutes"),
    "t_polls": ("Peilingen", "Polls"),
    "t_poll_results": ("Resultaten van de peilingen", "Poll results"),
    "t_top_questions": ("Topvragen", "Top questions"),
    "t_checkins": ("Check-ins ter plaatse", "On-site check-ins"),
    "t_hall_votes": ("Zaalstemmen", "Hall votes"),
    "t_incidents": ("Incidenten met de streams", "Stream incidents"),
    # columns
    "c_unit": ("Eenheid", "Unit"),
    "c_kind": ("Soort", "Kind"),
    "c_title": ("Titel", "Title"),
    "c_reached": ("Bereikt", "Reached"),
    "c_online": ("Online", "Online"),
    "c_onsite": ("Ter plaatse", "On site"),
    "c_peak": ("Piek", "Peak"),
    "c_peak_at": ("Piek om", "Peak at"),
    "c_attentive_minutes": ("Aandachtige minuten", "Attentive minutes"),
    "c_median_minutes": ("Mediaan (min)", "Median (min)"),
    "c_stayed": ("Gebleven ≥ 5 min", "Stayed ≥ 5 min"),
    "c_took_part": ("Deelgenomen", "Took part"),
    "c_min_1_4": ("1–4 min", "1–4 min"),
    "c_min_5_14": ("5–14 min", "5–14 min"),
    "c_min_15_29": ("15–29 min", "15–29 min"),
    "c_min_30_59": ("30–59 min", "30–59 min"),
    "c_min_60_plus": ("≥ 60 min", "≥ 60 min"),
    "c_minute": ("Minuut", "Minute"),
    "c_people": ("Personen", "People"),
    "c_share": ("Aandeel", "Share"),
    "c_present": ("Aanwezig", "Present"),
    "c_attentive": ("Aandachtig", "Attentive"),
    "c_chat_lines": ("Chatberichten", "Chat lines"),
    "c_chatters": ("Actieve chatters", "Active chatters"),
    "c_questions": ("Vragen", "Questions"),
    "c_action": ("Actie", "Action"),
    "c_count": ("Aantal", "Count"),
    "c_start": ("Begin", "Start"),
    "c_end": ("Einde", "End"),
    "c_seconds": ("Seconden", "Seconds"),
    "c_touched": ("Getroffen kijkers", "Viewers touched"),
    "c_poll_id": ("Peiling", "Poll"),
    "c_question": ("Vraag", "Question"),
    "c_state": ("Status", "State"),
    "c_opened_at": ("Geopend", "Opened"),
    "c_topics": ("Onderwerpen", "Topics"),
    "c_attentive_at_open": ("Aandachtig bij opening", "Attentive at opening"),
    "c_voters_online": ("Stemmers online", "Online voters"),
    "c_voters_hall": ("Stemmers zaal", "Hall voters"),
    "c_participation": ("Deelname", "Participation"),
    "c_origin": ("Herkomst", "Origin"),
    "c_choice": ("Antwoord", "Answer"),
    "c_question_id": ("Vraag-id", "Question id"),
    "c_topic": ("Onderwerp", "Topic"),
    "c_text": ("Tekst", "Text"),
    "c_upvoters": ("Upvotes", "Upvotes"),
    "c_votes": ("Stemmen", "Votes"),
    # unit kinds and incident kinds
    "k_day": ("dag", "day"),
    "k_stage": ("podium", "stage"),
    "k_theme": ("thema", "theme"),
    "k_item": ("onderdeel", "item"),
    "k_online_workshop": ("online workshop", "online workshop"),
    "k_interrupted": ("onderbreking", "interruption"),
    "k_black": ("zwart beeld", "black picture"),
    "k_frozen": ("bevroren beeld", "frozen picture"),
    "k_silent": ("stilte", "silence"),
    "k_loss": ("pakketverlies", "packet loss"),
}


def word(key: str, lang: str) -> str:
    """The word for ``key`` in ``lang`` (the key itself when there is none)."""
    pair = _WORDS.get(key)
    if pair is None:
        return key
    return pair[0] if lang == "nl" else pair[1]
