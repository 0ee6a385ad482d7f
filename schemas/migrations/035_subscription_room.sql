-- tracer schema, version 35: room on subscriptions' pages for their lease updates.
--
-- A delivery worker writes a subscription row twice per lease (claim, release) and once more when
-- a delivery fails. None of those columns is indexed, so each write could be a heap-only (HOT)
-- update that touches no index, but only while the row's page has room for the new version: the
-- table was packed full, so at 10,000 subscriptions about half of those writes moved the row to
-- another page and added an entry to each of its five indexes. Half-full pages keep the new
-- version beside the old one. It applies to pages written from now on; `VACUUM FULL subscriptions`
-- rewrites the existing ones (not done here: it locks the table).
ALTER TABLE subscriptions SET (fillfactor = 50);
