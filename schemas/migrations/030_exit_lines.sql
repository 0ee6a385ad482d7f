-- GET /v1/traces/{id}/exits of a running trace without re-encoding every line on every request.
--
-- The display form of each exit's address (EIP-55, or base58check for Tron's stored hex), written
-- with the row by the commit that writes its hops (tracer.store.hops.refresh_exits, same
-- transaction): Postgres has no keccak, so rows written before this column stay NULL and the API
-- computes theirs as before.
ALTER TABLE trace_exits ADD COLUMN IF NOT EXISTS address_checksum text;
-- The JSON of the line's parts that follow from the row alone (tracer.api.serialize.exit_line's
-- fields, in its order), written by the trigger below whenever the row is: line_head from "chain"
-- through "address_checksum", line_tail from "paths" through "amount_raw". line_tail is NULL while
-- a block time or the token's name is not known (the read looks those up and writes it then, with
-- the same function). The verdict's fields, the share and the dollars are written when read.
ALTER TABLE trace_exits ADD COLUMN IF NOT EXISTS line_head text;
ALTER TABLE trace_exits ADD COLUMN IF NOT EXISTS line_tail text;

-- tracer.domain.chains.native_unit: the symbol and decimals of a chain's native coin. Kept equal to
-- it by tests/integration/test_exit_lines.py (a chain added there needs a migration replacing this).
CREATE OR REPLACE FUNCTION tracer_native_unit(chain text, OUT symbol text, OUT decimals integer)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE chain
               WHEN 'ethereum' THEN 'ETH' WHEN 'arbitrum' THEN 'ETH' WHEN 'optimism' THEN 'ETH'
               WHEN 'base' THEN 'ETH' WHEN 'linea' THEN 'ETH' WHEN 'scroll' THEN 'ETH' WHEN 'zksync' THEN 'ETH'
               WHEN 'blast' THEN 'ETH' WHEN 'unichain' THEN 'ETH' WHEN 'worldchain' THEN 'ETH'
               WHEN 'lisk' THEN 'ETH' WHEN 'mode' THEN 'ETH' WHEN 'ink' THEN 'ETH' WHEN 'zora' THEN 'ETH'
               WHEN 'avalanche' THEN 'AVAX' WHEN 'bsc' THEN 'BNB' WHEN 'polygon' THEN 'POL'
               WHEN 'gnosis' THEN 'xDAI' WHEN 'bitcoin' THEN 'BTC' WHEN 'tron' THEN 'TRX'
               ELSE 'native' END,
           CASE chain WHEN 'bitcoin' THEN 8 WHEN 'tron' THEN 6 ELSE 18 END
$$;

-- A unix time as tracer.api.serialize.iso writes it (seconds, UTC, Z), as JSON.
CREATE OR REPLACE FUNCTION tracer_json_time(t bigint) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN t IS NULL THEN 'null'
                ELSE '"' || to_char(to_timestamp(t) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '"' END
$$;

-- The line from "paths" through "amount_raw" (tracer.api.serialize.exit_line and amount: the amount
-- exact in display units, trailing zeros cut, as format_units writes it).
CREATE OR REPLACE FUNCTION tracer_exit_line_tail(chain text, asset text, amount numeric, hops integer,
                                                 senders integer, depth integer, first_block bigint,
                                                 last_block bigint, first_time bigint, last_time bigint,
                                                 symbol text, decimals integer) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT ',"paths":' || hops || ',"senders":' || senders || ',"depth":' || coalesce(depth::text, 'null')
           || ',"first_seen":' || tracer_json_time(first_time) || ',"last_seen":' || tracer_json_time(last_time)
           || ',"first_block":' || first_block || ',"last_block":' || last_block
           || ',"asset":' || to_json(asset)::text || ',"symbol":' || coalesce(to_json(u.symbol)::text, 'null')
           || ',"decimals":' || coalesce(u.decimals::text, 'null')
           || ',"amount":"' || CASE WHEN coalesce(u.decimals, 0) <= 0 THEN amount::text
                                    ELSE trim_scale(amount * ('1e-' || u.decimals)::numeric)::text END
           || '","amount_raw":"' || amount::text || '"'
    FROM (SELECT CASE WHEN asset = 'native' THEN n.symbol ELSE tracer_exit_line_tail.symbol END AS symbol,
                 CASE WHEN asset = 'native' THEN n.decimals ELSE tracer_exit_line_tail.decimals END AS decimals
          FROM tracer_native_unit(chain) n) u
$$;

CREATE OR REPLACE FUNCTION tracer_exit_lines() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.line_head := '{"chain":' || to_json(NEW.chain)::text || ',"address":' || to_json(NEW.address)::text
                     || ',"address_checksum":' || coalesce(to_json(NEW.address_checksum)::text, 'null');
    -- the conditions of tracer.store.hops.FIRST_UNKNOWN and LAST_UNKNOWN
    IF NEW.first_time IS NULL OR NEW.first_time < 0 OR (NEW.asset <> 'native' AND NEW.symbol IS NULL)
       OR NEW.last_time IS NULL OR NEW.last_time < 0 THEN
        NEW.line_tail := NULL;
    ELSE
        NEW.line_tail := tracer_exit_line_tail(NEW.chain, NEW.asset, NEW.amount, NEW.hops, NEW.senders, NEW.depth,
                                               NEW.first_block, NEW.last_block, NEW.first_time, NEW.last_time,
                                               NEW.symbol, NEW.decimals);
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS trace_exits_lines ON trace_exits;
CREATE TRIGGER trace_exits_lines BEFORE INSERT OR UPDATE ON trace_exits
    FOR EACH ROW EXECUTE FUNCTION tracer_exit_lines();

-- The rows written before: the trigger writes their lines.
UPDATE trace_exits SET line_head = NULL;
