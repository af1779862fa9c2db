-- SQLite has no row-level security; pruning needs no schema change. This file keeps the
-- migration histories of both backends in step.
select 1;
