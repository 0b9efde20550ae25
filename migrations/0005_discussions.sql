-- Discussions: agents (and people) taking turns on a topic. The discussion row
-- holds its settings, its lifecycle state, the turn in progress (a lease, so
-- only one runs at a time and a crashed one is noticed) and the persisted
-- context a discussion manager keeps; participants and messages hang off it.

create table discussions (
    discussion_id uuid constraint discussions_pkey primary key,
    owner_id uuid not null
        constraint discussions_owner_id_fkey references users on delete cascade,
    title text not null
        constraint discussions_title_length check (char_length(title) between 1 and 200),
    -- The opening prompt every agent sees.
    topic text not null
        constraint discussions_topic_length check (char_length(topic) between 1 and 20000),
    -- draft → active ⇄ paused → completed; any of them → archived.
    status text not null default 'draft'
        constraint discussions_status_check
        check (status in ('draft', 'active', 'paused', 'completed', 'archived')),
    -- Why it completed: max_turns, token_budget, stop_phrase, or manual.
    completed_reason text
        constraint discussions_completed_reason_check
        check (completed_reason in ('max_turns', 'token_budget', 'stop_phrase', 'manual')),
    -- How the next speaker is chosen: round_robin, directed (the caller names
    -- them) or moderator (an agent participant chooses).
    turn_strategy text not null default 'round_robin'
        constraint discussions_turn_strategy_check
        check (turn_strategy in ('round_robin', 'directed', 'moderator')),
    -- The participant who moderates, for the moderator strategy.
    moderator_id uuid,
    -- Stop conditions; null: none.
    max_turns integer
        constraint discussions_max_turns_range check (max_turns between 1 and 100000),
    token_budget bigint
        constraint discussions_token_budget_range check (token_budget between 1 and 1000000000),
    stop_phrase text
        constraint discussions_stop_phrase_length check (char_length(stop_phrase) between 1 and 200),
    -- How the history is fitted into a model's context window:
    -- {"max_context_tokens": n | null, "reserve_tokens": n, "keep_recent_messages": n, "summarize": bool}.
    context_policy jsonb not null default '{}',
    -- What a human message posted during a turn does: enqueue, interrupt, reject.
    mid_turn_input text not null default 'enqueue'
        constraint discussions_mid_turn_input_check
        check (mid_turn_input in ('enqueue', 'interrupt', 'reject')),
    -- private: its owner, its human participants and admins; shared: every user reads it.
    visibility text not null default 'private'
        constraint discussions_visibility_check check (visibility in ('private', 'shared')),
    -- Forks keep a link to where they came from.
    parent_discussion_id uuid
        constraint discussions_parent_fkey references discussions on delete set null,
    forked_from_message_id uuid,
    -- Turns taken so far (agent and human messages that completed or were
    -- cancelled); the index the next turn gets.
    turn_count integer not null default 0,
    -- Tokens (prompt and completion) the discussion's model calls have used.
    tokens_used bigint not null default 0,
    -- Human participants who raised a hand to speak next, in the order they raised it.
    raised_hands uuid[] not null default '{}',
    -- The turn in progress: null when none. `turn_lease_expires_at` is pushed
    -- on while the turn's runner is alive; past it, the turn is interrupted.
    turn_id uuid,
    turn_state text
        constraint discussions_turn_state_check
        check (turn_state in ('choosing', 'generating', 'cancelling')),
    turn_speaker_id uuid,
    turn_message_id uuid,
    turn_started_at timestamptz,
    turn_lease_expires_at timestamptz,
    constraint discussions_turn_consistent
        check ((turn_id is null) = (turn_state is null)
           and (turn_id is null) = (turn_lease_expires_at is null)),
    -- The document a client-side discussion manager keeps, and its own version.
    context jsonb not null default '{}',
    context_version integer not null default 1,
    -- The rolling summary of the turns too old to fit a prompt, written by
    -- the turn engine, and the last message it covers.
    summary text not null default '',
    summary_through_seq bigint not null default 0,
    -- Optimistic concurrency for PATCH.
    version integer not null default 1,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create trigger discussions_set_updated_at before update on discussions
    for each row execute function set_updated_at();

-- Lists are newest first, narrowed by owner, status or visibility.
create index discussions_owner_id_idx on discussions (owner_id, discussion_id desc);
create index discussions_status_idx on discussions (status, discussion_id desc);
create index discussions_visibility_idx on discussions (visibility, discussion_id desc);
create index discussions_parent_idx on discussions (parent_discussion_id)
    where parent_discussion_id is not null;

-- Who takes part, in speaking order. A participant who leaves keeps their row
-- (`left_at`), so the messages they wrote still name them.
create table discussion_participants (
    participant_id uuid constraint discussion_participants_pkey primary key,
    discussion_id uuid not null
        constraint discussion_participants_discussion_id_fkey references discussions on delete cascade,
    -- Speaking order among those present, from 0; null once left.
    position integer,
    kind text not null
        constraint discussion_participants_kind_check check (kind in ('agent', 'user')),
    agent_id uuid
        constraint discussion_participants_agent_id_fkey references agents,
    user_id uuid
        constraint discussion_participants_user_id_fkey references users on delete cascade,
    -- What this discussion changes of the agent: another model, other parameters.
    model text
        constraint discussion_participants_model_length check (char_length(model) between 1 and 200),
    parameters jsonb,
    joined_at timestamptz not null default now(),
    left_at timestamptz,
    constraint discussion_participants_kind_consistent
        check ((kind = 'agent') = (agent_id is not null) and (kind = 'user') = (user_id is not null)),
    constraint discussion_participants_position_present
        check ((left_at is null) = (position is not null)),
    constraint discussion_participants_position_key
        unique (discussion_id, position) deferrable initially deferred
);

-- "Discussions this agent or user takes part in", and the agent delete check.
create index discussion_participants_agent_idx on discussion_participants (agent_id, discussion_id)
    where agent_id is not null and left_at is null;
create index discussion_participants_user_idx on discussion_participants (user_id, discussion_id)
    where user_id is not null and left_at is null;

alter table discussions add constraint discussions_moderator_id_fkey
    foreign key (moderator_id) references discussion_participants
    deferrable initially deferred;

-- What was said, in order. `seq` orders a discussion's messages (1, 2, ...);
-- a message being generated already has its place.
create table messages (
    message_id uuid constraint messages_pkey primary key,
    discussion_id uuid not null
        constraint messages_discussion_id_fkey references discussions on delete cascade,
    seq bigint not null,
    turn_index integer not null,
    participant_id uuid
        constraint messages_participant_id_fkey references discussion_participants,
    -- The author: an agent at a version, or a user.
    agent_id uuid
        constraint messages_agent_id_fkey references agents,
    agent_version integer,
    user_id uuid
        constraint messages_user_id_fkey references users on delete set null,
    content text not null default ''
        constraint messages_content_length check (char_length(content) <= 200000),
    -- For agents' messages: the model, its tokens and timings.
    model text,
    prompt_tokens integer,
    completion_tokens integer,
    first_token_ms double precision,
    latency_ms double precision,
    -- generating → completed | cancelled | interrupted | failed.
    status text not null
        constraint messages_status_check
        check (status in ('generating', 'completed', 'cancelled', 'interrupted', 'failed')),
    -- Why it failed, in Arena's or Ollama's words.
    error text,
    -- For a fork's copies: the message copied.
    copied_from_message_id uuid,
    created_at timestamptz not null default now(),
    completed_at timestamptz,
    constraint messages_seq_key unique (discussion_id, seq)
);

-- Idempotency: a retried request with the same `Idempotency-Key` gets the first
-- result. Kept a day.
create table idempotency_keys (
    user_id uuid not null
        constraint idempotency_keys_user_id_fkey references users on delete cascade,
    key text not null
        constraint idempotency_keys_key_length check (char_length(key) between 1 and 255),
    -- The method and path, and a digest of the body: the same key on another
    -- request is refused.
    scope text not null,
    fingerprint text not null,
    -- The first answer: its status and body, or the resource it made.
    status_code integer,
    body jsonb,
    resource_id uuid,
    created_at timestamptz not null default now(),
    constraint idempotency_keys_pkey primary key (user_id, key)
);

create index idempotency_keys_created_at_idx on idempotency_keys (created_at);
