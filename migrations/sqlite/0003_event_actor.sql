-- Who did what, each in a column of its own (issue 14): the door a person came through, the user name an SSH
-- client asked for (as sent), the key's comment and its SHA256 fingerprint. Never parsed out of `detail`.

ALTER TABLE event ADD COLUMN door TEXT;
ALTER TABLE event ADD COLUMN user_name TEXT;
ALTER TABLE event ADD COLUMN key_comment TEXT;
ALTER TABLE event ADD COLUMN key_fingerprint TEXT;
