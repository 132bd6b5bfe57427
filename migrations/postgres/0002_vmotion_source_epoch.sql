-- The source node's claim of the console when the migration was published (NULL: it held none then). A
-- destination's node that missed what the VM printed there asks that node for exactly this claim.
ALTER TABLE vmotions ADD COLUMN source_epoch bigint;
