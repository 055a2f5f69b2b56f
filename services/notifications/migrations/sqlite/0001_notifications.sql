CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    kind TEXT NOT NULL,
    event_id TEXT NOT NULL,
    order_id TEXT,
    order_number TEXT,
    recipient TEXT NOT NULL,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('stored', 'queued', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at INTEGER,
    created_at INTEGER NOT NULL,
    sent_at INTEGER,
    CONSTRAINT notifications_event_key UNIQUE (event_id)
);

CREATE INDEX notifications_feed_idx ON notifications (user_id, id);
CREATE INDEX notifications_due_idx ON notifications (status, next_attempt_at);
CREATE INDEX notifications_order_idx ON notifications (order_id);
CREATE INDEX notifications_recipient_idx ON notifications (recipient);
