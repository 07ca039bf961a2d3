-- Dagster's run and event storage lives beside Covr's database on the same server.
create database dagster owner covr;
