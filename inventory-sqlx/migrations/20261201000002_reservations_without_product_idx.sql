-- The index on (product_id, id) served only the operators' read of every
-- reservation of a product. It also served the store's lookups by id and by
-- (order, product) badly: while the table is small, PostgreSQL rated a walk
-- of it as cheap as the primary key or the unique key, and a plan made then
-- (the store plans its statements once per connection) kept walking every
-- reservation of a hot product for each lookup as the table grew. Without
-- it, each lookup has one index that serves it.
DROP INDEX reservations_product_idx;
