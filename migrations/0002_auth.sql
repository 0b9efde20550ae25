-- Authentication and authorization: users, login sessions with rotating
-- refresh tokens, API keys, rate-limit counters, login back-off and the audit
-- trail. Secrets never live here in clear: passwords as Argon2id PHC strings,
-- refresh tokens and API keys as SHA-256 digests (both are 256-bit random
-- values, so a fast digest is enough; a password is not, hence Argon2id).

create table users (
    user_id uuid constraint users_pkey primary key,
    -- Lowercase ASCII, so `Ada` and `ada` are one account and no two names
    -- look alike.
    username text not null
        constraint users_username_key unique
        constraint users_username_format check (username ~ '^[a-z0-9][a-z0-9._-]{2,63}$'),
    display_name text
        constraint users_display_name_length check (char_length(display_name) between 1 and 100),
    role text not null
        constraint users_role_check check (role in ('admin', 'member', 'viewer')),
    password_hash text not null,
    -- A disabled user cannot log in, and their sessions and keys stop working.
    disabled_at timestamptz,
    -- Optimistic concurrency: PATCH names the version it read.
    version integer not null default 1,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create trigger users_set_updated_at before update on users
    for each row execute function set_updated_at();

-- Bootstrapping looks for any admin; the user list filters by role.
create index users_role_idx on users (role, user_id);

-- One login: the family of refresh tokens that descend from it. Access tokens
-- carry its id (`sid`), so revoking it stops them on their next request.
create table sessions (
    session_id uuid constraint sessions_pkey primary key,
    user_id uuid not null
        constraint sessions_user_id_fkey references users on delete cascade,
    -- The device, as its User-Agent said at login.
    user_agent text,
    client_addr text,
    -- The most the session's tokens may do (the `scope` asked for at login);
    -- null: whatever the user's role is at the time.
    scope text
        constraint sessions_scope_check check (scope in ('admin', 'member', 'viewer')),
    created_at timestamptz not null default now(),
    last_used_at timestamptz not null default now(),
    -- However often it is refreshed, a session ends here.
    expires_at timestamptz not null,
    revoked_at timestamptz,
    -- Why: `logout`, `revoked`, `refresh_token_reused`, `user_disabled`, ...
    revoked_reason text
);

create index sessions_user_id_idx on sessions (user_id, created_at desc, session_id desc);

create table refresh_tokens (
    -- SHA-256 of the token the client holds.
    token_hash bytea constraint refresh_tokens_pkey primary key,
    session_id uuid not null
        constraint refresh_tokens_session_id_fkey references sessions on delete cascade,
    issued_at timestamptz not null default now(),
    -- Set when the token is exchanged for a new one. Presenting it again means
    -- it was copied: the whole session is revoked.
    rotated_at timestamptz
);

create index refresh_tokens_session_id_idx on refresh_tokens (session_id);

create table api_keys (
    api_key_id uuid constraint api_keys_pkey primary key,
    user_id uuid not null
        constraint api_keys_user_id_fkey references users on delete cascade,
    name text not null
        constraint api_keys_name_length check (char_length(name) between 1 and 100),
    -- What the key may do: never more than its owner may (checked on use too,
    -- since the owner's role can drop later).
    role text not null
        constraint api_keys_role_check check (role in ('admin', 'member', 'viewer')),
    -- SHA-256 of the key.
    key_hash bytea not null constraint api_keys_key_hash_key unique,
    -- The key's first characters, so a person can tell their keys apart.
    key_prefix text not null,
    created_at timestamptz not null default now(),
    last_used_at timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz
);

create index api_keys_user_id_idx on api_keys (user_id, api_key_id desc);

-- Fixed-window request counters, one row per bucket (`user:<id>`,
-- `addr:<ip>`, `token:<ip>`, ...). Unlogged: a crash forgets the counts,
-- which only forgives a window early, and writes skip the WAL.
create unlogged table rate_limits (
    bucket text constraint rate_limits_pkey primary key,
    window_start timestamptz not null,
    hits integer not null
);

-- Failed logins per account and per client address: after a few, each more
-- failure locks the subject out for twice as long (back-off).
create table login_throttles (
    -- `user:<username>` or `addr:<ip>`.
    subject text constraint login_throttles_pkey primary key,
    failures integer not null,
    last_failure_at timestamptz not null,
    locked_until timestamptz
);

-- Who did what, when, from where. Never a secret: no password, hash or token.
create table audit_events (
    -- UUID v7: ordered by time, and the list's cursor.
    audit_event_id uuid constraint audit_events_pkey primary key,
    occurred_at timestamptz not null default now(),
    -- e.g. `auth.login`, `auth.refresh_token_reused`, `user.role_changed`.
    action text not null,
    outcome text not null
        constraint audit_events_outcome_check check (outcome in ('success', 'failure', 'denied')),
    -- No foreign keys: the trail outlives what it mentions.
    actor_user_id uuid,
    -- The session or API key the actor used.
    actor_credential_id uuid,
    target_type text,
    target_id text,
    client_addr text,
    user_agent text,
    request_id text,
    details jsonb not null default '{}'
);

create index audit_events_actor_idx on audit_events (actor_user_id, audit_event_id desc);
create index audit_events_action_idx on audit_events (action, audit_event_id desc);
create index audit_events_target_idx on audit_events (target_type, target_id, audit_event_id desc);
