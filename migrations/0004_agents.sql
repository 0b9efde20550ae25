-- Agents: a persona (the system prompt) on a model with its generation
-- parameters, owned by a user and private to them or shared with everyone.
-- Every version an agent has had is kept in `agent_versions`, so a discussion
-- can record which version of an agent spoke.

create table agents (
    agent_id uuid constraint agents_pkey primary key,
    owner_id uuid not null
        constraint agents_owner_id_fkey references users on delete cascade,
    name text not null
        constraint agents_name_length check (char_length(name) between 1 and 100),
    description text
        constraint agents_description_length check (char_length(description) <= 2000),
    -- The system prompt the agent speaks with.
    persona text not null
        constraint agents_persona_length check (char_length(persona) between 1 and 20000),
    -- An Ollama model name (`llama3.2`, `qwen3:8b`).
    model text not null
        constraint agents_model_length check (char_length(model) between 1 and 200),
    -- Ollama's generation options (`temperature`, `top_p`, ...); `{}`: the
    -- model's defaults.
    parameters jsonb not null default '{}',
    tags text[] not null default '{}'
        constraint agents_tags_count check (cardinality(tags) <= 20),
    -- `private`: its owner (and admins) only; `shared`: every user may read it.
    visibility text not null default 'private'
        constraint agents_visibility_check check (visibility in ('private', 'shared')),
    -- Optimistic concurrency: PATCH names the version it read. Also the
    -- `agent_versions` row of the agent as it is now.
    version integer not null default 1,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- Soft deletion: discussions that had the agent still name it.
    deleted_at timestamptz
);

create trigger agents_set_updated_at before update on agents
    for each row execute function set_updated_at();

-- Every list is newest first (`agent_id desc`: ids are UUID v7) among the
-- agents not deleted, narrowed by one of these.
create index agents_owner_id_idx on agents (owner_id, agent_id desc) where deleted_at is null;
create index agents_visibility_idx on agents (visibility, agent_id desc) where deleted_at is null;
create index agents_model_idx on agents (model, agent_id desc) where deleted_at is null;
create index agents_tags_idx on agents using gin (tags) where deleted_at is null;
-- `q`: a prefix of the name, ignoring case (`lower(name) like 'abc%'`).
create index agents_name_idx on agents (lower(name) text_pattern_ops) where deleted_at is null;

-- Each version of each agent, as it was written: version 1 at creation, one
-- more with every change.
create table agent_versions (
    agent_id uuid not null
        constraint agent_versions_agent_id_fkey references agents on delete cascade,
    version integer not null,
    name text not null,
    description text,
    persona text not null,
    model text not null,
    parameters jsonb not null,
    tags text[] not null,
    visibility text not null
        constraint agent_versions_visibility_check check (visibility in ('private', 'shared')),
    created_at timestamptz not null default now(),
    -- Who wrote this version; null once that user is deleted.
    created_by uuid
        constraint agent_versions_created_by_fkey references users on delete set null,
    constraint agent_versions_pkey primary key (agent_id, version)
);
