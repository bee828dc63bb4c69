-- Check-in links for workshops and walks: a hall link names either a stage (a room with a
-- livestream) or a programme session held on site (a workshop's room, a walk's meeting
-- point). A scan logs a `checkin` on that place's topic.
ALTER TABLE hall_links ALTER COLUMN stage DROP NOT NULL;
ALTER TABLE hall_links ADD COLUMN session text;
ALTER TABLE hall_links ADD CONSTRAINT hall_links_one_place
    CHECK ((stage IS NULL) <> (session IS NULL));
