-- When the reviewer who holds an item claimed it (a renewal keeps it), and, with each
-- verdict, when its reviewer had claimed the item: a reviewer's handling time is the claim
-- to the verdict, not the item's wait in the queue before anyone took it.
ALTER TABLE review_items ADD COLUMN claimed_at timestamptz;
ALTER TABLE review_verdicts ADD COLUMN claimed_at timestamptz;
