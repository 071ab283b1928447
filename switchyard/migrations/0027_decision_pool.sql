-- Which Triton pool answered the router for a model decision: 'primary', or 'spill' when the
-- batch went to the spill-over pool (services/decision/pools.py). NULL when no model answered
-- (the models unavailable) and for people's decisions. `switchyard stats` prices each task's
-- inference by the pool that served it.
ALTER TABLE decisions ADD COLUMN pool text;
