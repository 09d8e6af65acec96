-- Which instance runs a saga, and until when: a lease, renewed at every step,
-- so that several instances on one database never run the same saga at once.
ALTER TABLE saga_states
    ADD COLUMN claimed_by        uuid,
    ADD COLUMN claimed_until_ms  bigint;
