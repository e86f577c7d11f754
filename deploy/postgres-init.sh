#!/bin/sh
# Runs once, when the Postgres volume is empty: one database per service, each owned by a role of
# its own that is not a superuser. The services never connect as `postgres`. The steward's reads
# for a tenant run as `syncropel_tenant`, a role row-level security confines to that tenant's rows
# (migrations/postgres/0005_row_level_security.sql); only a superuser may make it.
set -eu
psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres <<SQL
CREATE ROLE steward LOGIN PASSWORD '${STEWARD_DB_PASSWORD}';
CREATE ROLE directory LOGIN PASSWORD '${DIRECTORY_DB_PASSWORD}';
CREATE ROLE relay LOGIN PASSWORD '${RELAY_DB_PASSWORD}';
CREATE ROLE syncropel_tenant NOLOGIN;
GRANT syncropel_tenant TO steward;
CREATE DATABASE steward OWNER steward;
CREATE DATABASE directory OWNER directory;
CREATE DATABASE relay OWNER relay;
SQL
