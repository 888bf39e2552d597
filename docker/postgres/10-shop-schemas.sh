#!/bin/bash
# Runs once, when the PostgreSQL container initialises its data directory: the shop's database, one
# schema and one role per service, each role owning its schema and unable to touch another one. The
# same shape as libs/shopkit/provision.py (which the services' start-up can also run; it is idempotent).
set -euo pipefail

database="${SHOP_DB_NAME:-shop}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v db="$database" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SQL

for service in auth catalog orders payments; do
    role="shop_${service}"
    # The role's own password (SHOP_DB_PASSWORD_AUTH, ...), else the shared SHOP_DB_ROLE_PASSWORD, else
    # the development default: the same order as KitSettings.role_password, whose production refuses it.
    own="SHOP_DB_PASSWORD_${service^^}"
    password="${!own:-${SHOP_DB_ROLE_PASSWORD:-${role}-dev-password}}"
    psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$database" \
        -v role="$role" -v schema="$service" -v password="$password" -v db="$database" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'password')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', :'schema', :'role') \gexec
SELECT format('ALTER ROLE %I IN DATABASE %I SET search_path = %I', :'role', :'db', :'schema') \gexec
SELECT format('REVOKE ALL ON SCHEMA public FROM %I', :'role') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', :'db', :'role') \gexec
SELECT format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', :'schema') \gexec
SQL
done

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$database" \
    -c "REVOKE CREATE ON SCHEMA public FROM PUBLIC"
