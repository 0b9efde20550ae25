-- Every call to a language model, from any component: who and what it was
-- for, what it cost in tokens and time, and how it ended. Usage reports and
-- quotas read this table.
create table model_calls (
    model_call_id uuid constraint model_calls_pkey primary key,
    -- Who and what the call was for. No foreign keys: usage outlives them.
    user_id uuid not null,
    agent_id uuid,
    discussion_id uuid,
    model text not null,
    kind text not null
        constraint model_calls_kind_check check (kind in ('chat', 'embed')),
    -- `running` until it ends: `succeeded`; `failed` when the model or the
    -- connection to it broke; `cancelled` when the caller went away.
    status text not null
        constraint model_calls_status_check
        check (status in ('running', 'succeeded', 'failed', 'cancelled')),
    -- Ollama's `prompt_eval_count` and `eval_count`; 0 until it reports them.
    prompt_tokens integer not null default 0,
    completion_tokens integer not null default 0,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    -- As Arena measured them, in milliseconds.
    first_token_ms double precision,
    duration_ms double precision,
    -- Ollama's own timings, in nanoseconds.
    load_ns bigint,
    prompt_eval_ns bigint,
    eval_ns bigint,
    -- Why it failed, in Arena's or Ollama's words; never the prompt.
    error text
);

-- Quotas and usage reports: per user, agent or discussion over a time range.
create index model_calls_user_idx on model_calls (user_id, started_at);
create index model_calls_agent_idx on model_calls (agent_id, started_at)
    where agent_id is not null;
create index model_calls_discussion_idx on model_calls (discussion_id, started_at)
    where discussion_id is not null;
create index model_calls_started_idx on model_calls (started_at);
