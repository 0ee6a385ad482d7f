"""Ground truth by simulation: the haircut model over all transfers in execution order.

Deliberately independent of the generator: `reference_haircut` knows nothing of roles, only
transfers; `reference_through` also follows money through mixers, swaps and bridges with certainty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from tracer.devchain.scenario.history import Scenario
from tracer.devchain.scenario.model import (
    KIND_BRIDGE,
    KIND_MIXER,
    KIND_SWAP,
    KIND_WITHDRAW,
    ExitTruth,
    HubTruth,
    MixerTruth,
    OfframpTruth,
    ScenarioTx,
    Truth,
)


def reference_haircut(
    txs: Iterable[ScenarioTx],
    genesis_balances: dict[str, dict[str, int]],
    seeds: Iterable[str],
    stops: Iterable[str],
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int], dict[str, int]]:
    """Follow flagged money with the haircut model; return what reached each stop.

    Seeds' outflows are fully flagged. Any other address sends flagged/balance of each outflow
    (per asset, balances from genesis, gas ignored). Flagged money reaching a stop stays there
    (stops never pass it on). Returns ({(stop, asset): flagged received}, {(stop, asset): number
    of flagged receipts}, {asset: flagged amount the seeds sent}).

    Deliberately independent of the generator: it knows nothing of roles, only transfers.
    """
    seed_set = set(seeds)
    stop_set = set(stops)
    # Per asset, keyed by address: string keys hash once, tuple keys hash on every lookup.
    balance: dict[str, dict[str, int]] = {}
    flagged: dict[str, dict[str, int]] = {}
    for address, assets in genesis_balances.items():
        for asset, amount in assets.items():
            balance.setdefault(asset, {})[address] = amount
    received: dict[tuple[str, str], int] = {}
    receipts: dict[tuple[str, str], int] = {}
    sent_by_seeds: dict[str, int] = {}
    for tx in txs:
        if not tx.ok:
            continue
        for frm, to, asset, amount in tx.transfers():
            bal = balance.get(asset)
            if bal is None:
                bal = balance[asset] = {}
            fl = flagged.get(asset)
            if fl is None:
                fl = flagged[asset] = {}
            have = bal.get(frm, 0)
            if frm in seed_set:
                out = amount
                sent_by_seeds[asset] = sent_by_seeds.get(asset, 0) + amount
            elif frm in stop_set:
                out = 0
            else:
                f = fl.get(frm, 0)
                out = f * amount // have if f and have else 0
                if out:
                    fl[frm] = f - out
            bal[frm] = have - amount
            bal[to] = bal.get(to, 0) + amount
            if not out or to in seed_set:
                continue
            if to in stop_set:
                key = (to, asset)
                received[key] = received.get(key, 0) + out
                receipts[key] = receipts.get(key, 0) + 1
            else:
                fl[to] = fl.get(to, 0) + out
    return received, receipts, sent_by_seeds


def build_truth(
    sc: Scenario,
    *,
    stolen: dict[str, int],
    deposit_addresses: dict[str, str],
    hubs: Sequence[str],
    noise_offramps: Sequence[str],
    launderers: Sequence[str],
    terminals: dict[str, tuple[str, str]] | None = None,
    stop_at_labels: bool = True,
) -> Truth:
    """Run `reference_haircut` with every service as a stop and sort the receipts into a Truth.

    Stops: deposit addresses (never followed through their sweep), hubs, `terminals` (address ->
    (entity, category), from replayed cases) and, with `stop_at_labels`, every labelled exchange,
    mixer, bridge and dex address. Replays pass False: there a labelled router can sit mid-path.
    """
    label_of = {lb.address: lb for lb in sc.labels}
    stop_categories = {"exchange", "mixer", "bridge", "dex"}
    stops = set(deposit_addresses) | set(hubs)
    if stop_at_labels:
        stops |= {a for a, lb in label_of.items() if lb.category in stop_categories}
    terminals = terminals or {}
    stops |= set(terminals)
    received, receipts, _ = reference_haircut((tx for _, tx in sc.iter_txs()), sc.genesis_balances, sc.seeds, stops)
    truth = Truth(
        stolen=dict(stolen),
        hubs=sorted(set(hubs)),
        noise_offramps=sorted(set(noise_offramps)),
        deposit_addresses=dict(sorted(deposit_addresses.items())),
        launderers=sorted(set(launderers)),
    )
    for (address, asset), amount in sorted(received.items()):
        if address in deposit_addresses:
            truth.offramps.append(OfframpTruth(address, deposit_addresses[address], asset, amount, "deposit_address"))
        elif address in hubs:
            truth.hub_receipts.append(HubTruth(address, asset, amount))
        elif address in label_of and label_of[address].category == "exchange":
            truth.offramps.append(OfframpTruth(address, label_of[address].entity, asset, amount, "hot_wallet"))
        elif address in label_of and label_of[address].category == "mixer":
            truth.mixer_deposits.append(MixerTruth(address, asset, amount, receipts[(address, asset)]))
        elif address in label_of:
            lb = label_of[address]
            truth.other_exits.append(ExitTruth(address, lb.entity, lb.category, asset, amount))
        else:
            entity, category = terminals.get(address, ("", "unknown"))
            truth.other_exits.append(ExitTruth(address, entity, category, asset, amount))
    return truth


@dataclass
class ThroughFlows:
    """What `reference_through` found: flagged receipts at stops, and per transaction (by id()) the
    flagged value its sender put into a pool, pair or router, and the flagged value a swap paid out."""

    received: dict[tuple[str, str], int]
    put_in: dict[int, int]
    swapped_out: dict[int, int]


def reference_through(
    txs: Iterable[ScenarioTx],
    genesis_balances: dict[str, dict[str, int]],
    seeds: Iterable[str],
    stops: Iterable[str],
    note_links: dict[int, int],
) -> ThroughFlows:
    """`reference_haircut` that also follows money through services with certainty.

    A swap's payout carries the flagged share of what was swapped in (the swap's own rate); a
    withdrawal listed in `note_links` (id of the withdrawal tx -> id of the deposit tx) pays its
    recipient the deposit's flagged amount, capped by what the recipient got (the relayer's fee
    is not followed): what a certain link carries in tracer's engine. Everything else stops at
    stops, as in `reference_haircut`.
    """
    seed_set = set(seeds)
    stop_set = set(stops)
    balance: dict[tuple[str, str], int] = {}
    flagged: dict[tuple[str, str], int] = {}
    for address, assets in genesis_balances.items():
        for asset, amount in assets.items():
            balance[(address, asset)] = amount
    linked_deposits = set(note_links.values())
    notes: dict[int, int] = {}
    flows = ThroughFlows({}, {}, {})

    def credit(to: str, asset: str, out: int) -> None:
        if not out or to in seed_set:
            return
        if to in stop_set:
            flows.received[(to, asset)] = flows.received.get((to, asset), 0) + out
        else:
            flagged[(to, asset)] = flagged.get((to, asset), 0) + out

    for tx in txs:
        if not tx.ok:
            continue
        key = id(tx)
        moves = tx.transfers()
        if tx.kind == KIND_WITHDRAW and key in note_links:
            note = notes.pop(note_links[key], 0)
            for i, (frm, to, asset, amount) in enumerate(moves):
                balance[(frm, asset)] = balance.get((frm, asset), 0) - amount
                balance[(to, asset)] = balance.get((to, asset), 0) + amount
                if i == 0:
                    credit(to, asset, min(note, amount))
            continue
        swapped_in = 0
        for i, (frm, to, asset, amount) in enumerate(moves):
            have = balance.get((frm, asset), 0)
            if tx.kind == KIND_SWAP and i > 0:
                out = swapped_in * amount // tx.value if tx.value else 0
                flows.swapped_out[key] = flows.swapped_out.get(key, 0) + out
            elif frm in seed_set:
                out = amount
            elif frm in stop_set:
                out = 0
            else:
                f = flagged.get((frm, asset), 0)
                out = f * amount // have if f and have else 0
                if out:
                    flagged[(frm, asset)] = f - out
            balance[(frm, asset)] = have - amount
            balance[(to, asset)] = balance.get((to, asset), 0) + amount
            if i == 0 and tx.kind in (KIND_MIXER, KIND_SWAP, KIND_BRIDGE):
                flows.put_in[key] = out
                swapped_in = out
                if key in linked_deposits:
                    notes[key] = out
            credit(to, asset, out)
    return flows
