-- Events: every write that others must see (message created, turn started,
-- token or finished, discussion status changed, job progress) inserts a row
-- here in its own transaction. The insert announces the row on the
-- `arena_events` channel when the transaction commits; the realtime sidecar
-- LISTENs there, reads the row, fans it out to subscribers, and replays from
-- this table for a client that reconnects with its last event id.

create table events (
    -- Monotonic, and the `id:` of the SSE event: a client resumes with
    -- `Last-Event-ID`. Handed out at insert, not at commit, so a transaction
    -- that commits late can make a smaller id visible after a larger one.
    event_id bigint generated always as identity
        constraint events_pkey primary key,
    -- What a client subscribes to, e.g. `discussion:<uuid>`. Bounded so the
    -- NOTIFY payload stays far below PostgreSQL's 8000-byte limit.
    stream text not null
        constraint events_stream_length check (char_length(stream) between 1 and 256),
    -- What happened, e.g. `message.created`, `turn.token`.
    type text not null
        constraint events_type_not_empty check (type <> ''),
    payload jsonb not null,
    created_at timestamptz not null default now()
);

-- Replay: the events of one stream after a given id, in order.
create index events_stream_event_id_idx on events (stream, event_id);

-- Announces a new event. The payload is only the event's address: listeners
-- read the row itself, which may be larger than a NOTIFY payload can be.
create function events_notify() returns trigger
language plpgsql as $$
begin
    perform pg_notify(
        'arena_events',
        json_build_object('event_id', new.event_id, 'stream', new.stream)::text
    );
    return null; -- ignored for an after trigger
end;
$$;

create trigger events_notify
    after insert on events
    for each row execute function events_notify();

-- For every table with an `updated_at` column:
--   create trigger <table>_set_updated_at before update on <table>
--       for each row execute function set_updated_at();
create function set_updated_at() returns trigger
language plpgsql as $$
begin
    new.updated_at := now();
    return new;
end;
$$;
