-- Runs once, when the Postgres volume is empty: one database per service.
CREATE DATABASE steward;
CREATE DATABASE directory;
