package postgres

// schemaVersion is the version of a store written by this code, kept in
// pec_schema: one per migration.
var schemaVersion = len(migrations)

// migrations[i] upgrades a store from version i to i+1. Append new ones
// at the end; never change one that was released. They run in one
// transaction under an advisory lock, so nodes starting together upgrade
// once. The tables mirror store/sqlite's; every free-form string of a log
// row is BYTEA, because a row must come back byte for byte (its hash
// covers it) and TEXT refuses NUL and invalid UTF-8. Times are Unix
// nanoseconds, as in SQLite, so that both backends hash the same instant.
var migrations = []string{
	// 0 -> 1
	`
CREATE TABLE chain (
	one         INTEGER PRIMARY KEY CHECK (one = 1),
	anchor_id   BIGINT NOT NULL,  -- last purged event row (0: none)
	anchor_hash BYTEA  NOT NULL,  -- its hash (zero hash: none)
	head_id     BIGINT NOT NULL,  -- last written event row
	head_hash   BYTEA  NOT NULL   -- appends lock this row (SELECT ... FOR UPDATE)
);
INSERT INTO chain VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0, decode(repeat('00', 32), 'hex'));

CREATE TABLE events (
	id         BIGINT PRIMARY KEY,  -- contiguous: head_id+1 on insert
	time_ns    BIGINT NOT NULL,     -- unix nanoseconds, UTC
	point      BYTEA NOT NULL,
	type       BYTEA NOT NULL,
	pecid      BYTEA NOT NULL,
	msgid      BYTEA NOT NULL,
	sender     BYTEA NOT NULL,
	recipients TEXT NOT NULL,       -- JSON array of strings
	subject    BYTEA NOT NULL,
	related    TEXT NOT NULL,       -- JSON array of strings
	provider   BYTEA NOT NULL,
	error      BYTEA NOT NULL,
	queue_id   BYTEA NOT NULL,
	prev_hash  BYTEA NOT NULL,
	hash       BYTEA NOT NULL
);
CREATE INDEX events_time   ON events (time_ns);
CREATE INDEX events_pecid  ON events (pecid);
CREATE INDEX events_msgid  ON events (msgid);
-- ASCII case folding that keeps every other byte: encode(..., 'escape')
-- is ASCII, so lower() folds A-Z only, whatever the database's locale
CREATE INDEX events_sender ON events (lower(encode(sender, 'escape')));

-- Defence in depth: the application never updates log rows and deletes
-- them only through Purge, oldest first, after moving the anchor.
CREATE FUNCTION pec_events_no_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'pec event log is append-only: rows cannot be updated';
END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
	FOR EACH ROW EXECUTE FUNCTION pec_events_no_update();
CREATE FUNCTION pec_events_no_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF old.id > (SELECT anchor_id FROM chain WHERE one = 1) THEN
		RAISE EXCEPTION 'pec event log is append-only: only Purge deletes rows, oldest first';
	END IF;
	RETURN old;
END $$;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
	FOR EACH ROW EXECUTE FUNCTION pec_events_no_delete();
CREATE FUNCTION pec_events_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'pec event log is append-only: it cannot be truncated';
END $$;
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
	FOR EACH STATEMENT EXECUTE FUNCTION pec_events_no_truncate();

CREATE TABLE outbox (
	id          BIGSERIAL PRIMARY KEY,
	created_ns  BIGINT NOT NULL,
	mail_from   TEXT NOT NULL,
	rcpts       TEXT NOT NULL,              -- JSON array of strings
	data        BYTEA NOT NULL,
	message_id  TEXT NOT NULL,
	kind        TEXT NOT NULL,
	attempts    INTEGER NOT NULL DEFAULT 0,
	next_try_ns BIGINT NOT NULL DEFAULT 0,  -- 0: as soon as possible; a claim's lease end
	last_error  TEXT NOT NULL DEFAULT '',
	sent_ns     BIGINT                      -- NULL while pending
);
CREATE INDEX outbox_pending ON outbox (next_try_ns, id) WHERE sent_ns IS NULL;

CREATE TABLE outbox_claims (
	item     BIGINT PRIMARY KEY,  -- outbox.id
	until_ns BIGINT NOT NULL,     -- the lease end written into outbox.next_try_ns
	host     TEXT NOT NULL,
	pid      BIGINT NOT NULL,
	instance TEXT NOT NULL,
	proc     TEXT NOT NULL
);

CREATE TABLE virus (
	id         BIGSERIAL PRIMARY KEY,
	time_ns    BIGINT NOT NULL,
	pecid      BYTEA NOT NULL,
	sender     BYTEA NOT NULL,
	recipients TEXT NOT NULL,     -- JSON array of strings
	signature  BYTEA NOT NULL,
	data       BYTEA NOT NULL
);
CREATE INDEX virus_pecid ON virus (pecid);
CREATE INDEX virus_time  ON virus (time_ns);

CREATE TABLE tracking (
	pecid       BYTEA NOT NULL,
	rcpt        BYTEA NOT NULL,     -- lower case
	sent_ns     BIGINT NOT NULL,
	tx          BYTEA NOT NULL,
	presa_ns    BIGINT,
	outcome_ns  BIGINT,
	outcome     TEXT NOT NULL DEFAULT '',
	notice12_ns BIGINT,
	notice24_ns BIGINT,
	held        TEXT,               -- token of a held transaction; NULL: effective
	PRIMARY KEY (pecid, rcpt)
);
CREATE INDEX tracking_open ON tracking (sent_ns) WHERE outcome_ns IS NULL AND notice24_ns IS NULL;
CREATE INDEX tracking_held ON tracking (held) WHERE held IS NOT NULL;

CREATE TABLE held (
	token      TEXT PRIMARY KEY,
	queue_id   TEXT NOT NULL,
	created_ns BIGINT NOT NULL,
	txn        BYTEA NOT NULL     -- JSON of the store.Txn, without its timer rows
);

CREATE TABLE leases (
	name     TEXT PRIMARY KEY,
	holder   TEXT NOT NULL,
	until_ns BIGINT NOT NULL,
	done_ns  BIGINT,
	note     TEXT NOT NULL DEFAULT ''
);

CREATE TABLE shared (
	name  TEXT PRIMARY KEY,
	at_ns BIGINT NOT NULL,
	data  BYTEA NOT NULL
);
`,
	// 1 -> 2: the delivery point's record of what it handed to Dovecot
	// (store/delivery.go)
	`
CREATE TABLE deliveries (
	msg_key BYTEA NOT NULL,               -- PEC id of an envelope, or a content hash
	rcpt    BYTEA NOT NULL,               -- lower case
	state   TEXT NOT NULL CHECK (state IN ('pending', 'stored', 'failed', 'unknown')),
	owner   TEXT NOT NULL DEFAULT '',     -- the LMTP transaction that recorded the intent
	pid     BIGINT NOT NULL DEFAULT 0,    -- its process
	at_ns   BIGINT NOT NULL,              -- last change
	PRIMARY KEY (msg_key, rcpt)
);
CREATE INDEX deliveries_at ON deliveries (at_ns);
`,
	// 2 -> 3: the provider's service state, suspended or active
	// (store/postgres/service.go)
	`
CREATE TABLE service_state (
	one       INTEGER PRIMARY KEY CHECK (one = 1),
	suspended BOOLEAN NOT NULL,
	reason    BYTEA   NOT NULL,
	since_ns  BIGINT  NOT NULL,
	by_whom   BYTEA   NOT NULL
);
`,
	// 3 -> 4: the daemons' health samples (store/admin.go), for the
	// availability figures of pecctl report
	healthSchema,
	// 4 -> 5: the mailbox registry (store/mailbox.go)
	mailboxesSchema,
}
