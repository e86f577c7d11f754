#!/bin/sh
# Runs once, when the Postgres volume is empty: one database per service, each owned by a role of
# its own that is not a superuser. The services never connect as `postgres`.
set -eu
psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres <<SQL
CREATE ROLE steward LOGIN PASSWORD '${STEWARD_DB_PASSWORD}';
CREATE ROLE directory LOGIN PASSWORD '${DIRECTORY_DB_PASSWORD}';
CREATE DATABASE steward OWNER steward;
CREATE DATABASE directory OWNER directory;
SQL
