-- An API token may expire: NULL (the default) never does; after `expires_at` the token is
-- refused like a revoked one (cloud/api/tokens.py `lookup`).
ALTER TABLE api_tokens ADD COLUMN expires_at timestamptz;
