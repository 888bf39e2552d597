-- (b) One checkout saga as four transactions, each with its inbox and outbox rows: orders places;
-- payments records the success; catalog locks the product rows in id order and commits the stock with
-- its ledger; orders confirms.
\set a random(1, 999)
\set b :a + 1
SELECT gen_random_uuid() AS oid, gen_random_uuid() AS pid \gset
BEGIN;
INSERT INTO bench.orders VALUES (':oid', gen_random_uuid(), 'pending_payment', 'BDT', 250.00, now(), now());
INSERT INTO bench.order_items VALUES (gen_random_uuid(), ':oid', gen_random_uuid(), 'SKU-A', 'Product', 100.00, 1);
INSERT INTO bench.order_items VALUES (gen_random_uuid(), ':oid', gen_random_uuid(), 'SKU-B', 'Product', 150.00, 1);
INSERT INTO bench.outbox VALUES (gen_random_uuid(), jsonb_build_object('type', 'OrderPlaced'), 'pending', 0, now());
COMMIT;
BEGIN;
INSERT INTO bench.inbox VALUES (gen_random_uuid(), 'payments.on_order_placed', 'OrderPlaced', now());
INSERT INTO bench.payments VALUES (':pid', ':oid', 'succeeded', 250.00, now());
INSERT INTO bench.outbox VALUES (gen_random_uuid(), jsonb_build_object('type', 'PaymentSucceeded'), 'pending', 0, now());
COMMIT;
BEGIN;
INSERT INTO bench.inbox VALUES (gen_random_uuid(), 'catalog.on_payment_succeeded', 'PaymentSucceeded', now());
SELECT id, stock FROM bench.products WHERE id IN (:a, :b) ORDER BY id FOR UPDATE;
UPDATE bench.products SET stock = stock - 1, updated_at = now() WHERE id IN (:a, :b);
INSERT INTO bench.stock_movements SELECT gen_random_uuid(), id, -1, 'order_commit', ':oid', stock, now() FROM bench.products WHERE id IN (:a, :b);
INSERT INTO bench.outbox VALUES (gen_random_uuid(), jsonb_build_object('type', 'StockCommitted'), 'pending', 0, now());
COMMIT;
BEGIN;
INSERT INTO bench.inbox VALUES (gen_random_uuid(), 'orders.on_stock_committed', 'StockCommitted', now());
UPDATE bench.orders SET status = 'confirmed', updated_at = now() WHERE id = ':oid';
INSERT INTO bench.outbox VALUES (gen_random_uuid(), jsonb_build_object('type', 'OrderConfirmed'), 'pending', 0, now());
COMMIT;
