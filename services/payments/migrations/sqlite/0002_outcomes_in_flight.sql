-- Charges and refunds still in flight, oldest change first: the provider
-- is asked about those whose outcome never arrived.
CREATE INDEX payments_in_flight_idx ON payments (status, updated_at)
    WHERE status IN ('processing', 'refunding');
