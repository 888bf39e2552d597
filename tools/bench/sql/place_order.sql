-- (a) What placing an order writes in one transaction: the order, its two lines, OrderPlaced in the outbox.
\set p1 random(1, 1000)
\set p2 random(1, 1000)
BEGIN;
SELECT gen_random_uuid() AS oid \gset
INSERT INTO bench.orders VALUES (':oid', gen_random_uuid(), 'pending_payment', 'BDT', 250.00, now(), now());
INSERT INTO bench.order_items VALUES (gen_random_uuid(), ':oid', gen_random_uuid(), 'SKU-' || :p1, 'Product', 100.00, 1);
INSERT INTO bench.order_items VALUES (gen_random_uuid(), ':oid', gen_random_uuid(), 'SKU-' || :p2, 'Product', 150.00, 1);
INSERT INTO bench.outbox VALUES (gen_random_uuid(), jsonb_build_object('type', 'OrderPlaced', 'order_id', ':oid'), 'pending', 0, now());
COMMIT;
