-- Realtime: gapless event positions for the realtime hub, and the single-use
-- tickets a browser opens a WebSocket or an EventSource with.
--
-- `event_id` is handed out at insert, so a transaction that commits late makes a
-- smaller id visible after a larger one, and a reader of `event_id > cursor`
-- could step over it. The hub's sequencer therefore gives each event a
-- `position` once it is committed (visible); sequencing runs one transaction at
-- a time (an advisory lock), so each one makes a contiguous block of larger
-- positions visible, and a reader of `position > cursor` never skips one. The
-- position is the event id clients see.

alter table events
    -- The event's place in the log, given by the sequencer; null until then.
    -- What clients see as the event id, resume from (`since`,
    -- `Last-Event-ID`) and the hub replays after.
    add column position bigint;

-- Positions are handed out by the sequencer only (under its advisory lock), so
-- they increase with each sequencing transaction.
create sequence events_position_seq as bigint owned by events.position;

alter table events add constraint events_position_key unique (position);

-- Replay: the events of one stream after a position; the latest position of a
-- stream (the `last_event_id` of a REST read).
create index events_stream_position_idx on events (stream, position);

-- The sequencer's work list: events not yet given a position.
create index events_unsequenced_idx on events (event_id) where position is null;

-- Retention: events older than the retention period (time grows with the
-- table's order, so a BRIN index is enough and costs inserts next to nothing)...
create index events_created_at_idx on events using brin (created_at);

-- ...and token chunks, pruned minutes after their message is stored.
create index events_turn_token_created_at_idx on events (created_at)
    where type = 'turn.token';

-- A ticket from `POST /v1/realtime/tickets`: lets a client that cannot set
-- headers (a browser's WebSocket or EventSource) connect with `?ticket=`.
-- Valid for seconds, used once, stored as a digest only.
create table realtime_tickets (
    -- SHA-256 of the ticket, hex.
    ticket_digest text constraint realtime_tickets_pkey primary key,
    user_id uuid not null
        constraint realtime_tickets_user_id_fkey references users on delete cascade,
    -- The credential the ticket was issued to: a session (access token) or an
    -- API key; re-checked when the ticket is used.
    session_id uuid
        constraint realtime_tickets_session_id_fkey references sessions on delete cascade,
    api_key_id uuid
        constraint realtime_tickets_api_key_id_fkey references api_keys on delete cascade,
    -- The role in force when the ticket was issued; never more than the
    -- credential's at use.
    role text not null
        constraint realtime_tickets_role_check check (role in ('admin', 'member', 'viewer')),
    expires_at timestamptz not null,
    -- Set when the ticket is spent: a ticket opens one connection.
    used_at timestamptz,
    created_at timestamptz not null default now(),
    constraint realtime_tickets_one_credential check (session_id is null or api_key_id is null)
);

-- Retention: expired tickets are deleted.
create index realtime_tickets_expires_at_idx on realtime_tickets (expires_at);
