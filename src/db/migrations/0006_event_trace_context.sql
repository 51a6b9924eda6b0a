-- The W3C traceparent of the transaction that wrote an event, so the worker's delivery span joins
-- the trace of the request that caused it.
ALTER TABLE events ADD COLUMN trace_context text;
