-- Backward traces through bridges (issue 20): a bridge payout a walked wallet received, tied to
-- the deposit on the other chain its event names (THORChain memo OUT:<hash>, Across deposit id,
-- Wormhole sequence). The walk writes one row per link; the colouring carries the payout's share
-- back to the deposit and on from the depositor on that chain.
CREATE TABLE IF NOT EXISTS backward_bridges (
    trace_id            bigint NOT NULL REFERENCES traces (id) ON DELETE CASCADE,
    payout_transfer_id  bigint NOT NULL,  -- transfers (id): no foreign key across Citus groups (026)
    deposit_transfer_id bigint NOT NULL,
    deposit_chain       text   NOT NULL,
    confidence          double precision NOT NULL,
    evidence            jsonb  NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (trace_id, payout_transfer_id, deposit_transfer_id)
);
