-- The plain-SQL twin of a stock commit: products with stock and an outbox, nothing else.
DROP TABLE IF EXISTS bench_products, bench_outbox;
CREATE TABLE bench_products (id int PRIMARY KEY, stock int NOT NULL CHECK (stock >= 0));
CREATE TABLE bench_outbox (id uuid PRIMARY KEY, payload jsonb NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO bench_products SELECT g, %(stock)s FROM generate_series(1, %(rows)s) g;
