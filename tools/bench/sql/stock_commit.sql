-- The same shape of transaction as the catalog's stock commit, without the service: lock the row,
-- decrement it, write an outbox row. `rows` (pgbench -D) products: 1 is the hot case.
\set pid random(1, :rows)
BEGIN;
SELECT stock FROM bench_products WHERE id = :pid FOR UPDATE;
UPDATE bench_products SET stock = stock - 1 WHERE id = :pid;
INSERT INTO bench_outbox (id, payload, created_at) VALUES (gen_random_uuid(), '{"type": "StockCommitted"}', now());
END;
