-- Decimals and symbol of tokens, kept across traces (issue 22): the worker names only the tokens
-- its hops move, and a token named once is never asked of the node again (two eth_calls each).
-- Only answers that named something are kept: a failed call is asked again next time.
CREATE TABLE IF NOT EXISTS token_meta (
    chain     text     NOT NULL,
    token     text     NOT NULL,
    decimals  smallint,
    symbol    text,
    PRIMARY KEY (chain, token)
);
