-- Scratch tables shaped like the services' own (orders, order lines, outbox, inbox, stock, ledger,
-- payments) in a schema of their own: what PostgreSQL alone can do with the shop's write pattern.
DROP SCHEMA IF EXISTS bench CASCADE;
CREATE SCHEMA bench;
CREATE TABLE bench.orders (
  id uuid PRIMARY KEY, user_id uuid NOT NULL, status varchar(20) NOT NULL, currency char(3) NOT NULL,
  total_amount numeric(12,2) NOT NULL, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE bench.order_items (
  id uuid PRIMARY KEY, order_id uuid NOT NULL REFERENCES bench.orders(id), product_id uuid NOT NULL,
  sku varchar(64) NOT NULL, name varchar(200) NOT NULL, unit_price numeric(12,2) NOT NULL,
  quantity int NOT NULL);
CREATE INDEX ON bench.order_items (order_id);
CREATE TABLE bench.outbox (
  id uuid PRIMARY KEY, envelope jsonb NOT NULL, status varchar(16) NOT NULL,
  attempts int NOT NULL DEFAULT 0, created_at timestamptz NOT NULL);
CREATE INDEX ON bench.outbox (status, created_at);
CREATE TABLE bench.inbox (
  event_id uuid NOT NULL, handler varchar(200) NOT NULL, event_type varchar(64),
  handled_at timestamptz NOT NULL, PRIMARY KEY (event_id, handler));
CREATE TABLE bench.products (id int PRIMARY KEY, stock int NOT NULL CHECK (stock >= 0),
  updated_at timestamptz NOT NULL);
CREATE TABLE bench.stock_movements (
  id uuid PRIMARY KEY, product_id int NOT NULL, delta int NOT NULL, cause varchar(20) NOT NULL,
  order_id uuid, stock_after int NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE bench.payments (
  id uuid PRIMARY KEY, order_id uuid NOT NULL, status varchar(20) NOT NULL,
  amount numeric(12,2) NOT NULL, created_at timestamptz NOT NULL);
INSERT INTO bench.products SELECT g, 1000000000, now() FROM generate_series(1, 1000) g;
