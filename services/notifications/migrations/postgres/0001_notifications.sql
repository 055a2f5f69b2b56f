-- Ids are UUID v7 text and times are epoch milliseconds so the same
-- queries serve PostgreSQL and SQLite. Ids sort by creation time; the C
-- collation keeps that order whatever the database's locale.
CREATE TABLE notifications (
    id TEXT COLLATE "C" PRIMARY KEY,
    -- The customer whose feed shows it; NULL when no account is known.
    user_id TEXT,
    kind TEXT NOT NULL,
    -- The event that caused it: one notification per event.
    event_id TEXT NOT NULL,
    order_id TEXT,
    order_number TEXT,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    -- stored: in-app only (no SMTP configured); queued: waiting for (another)
    -- delivery attempt; sent: accepted by the SMTP server; failed: given up.
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    -- When a queued notification is next due (also the lease of a claimed one).
    next_attempt_at BIGINT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT,
    CONSTRAINT notifications_event_key UNIQUE (event_id),
    CONSTRAINT notifications_status_check CHECK (status IN ('stored', 'queued', 'sent', 'failed'))
);

-- The feed: a customer's notifications, newest first.
CREATE INDEX notifications_feed_idx ON notifications (user_id, id DESC);
-- The sender's queue: only rows still waiting are indexed.
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at) WHERE status = 'queued';
-- Finding a refund's customer from earlier notifications about the order.
CREATE INDEX notifications_order_idx ON notifications (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX notifications_recipient_idx ON notifications (recipient) WHERE user_id IS NOT NULL;
