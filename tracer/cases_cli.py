"""`tracer cases`: list, show, create and annotate cases from the shell, straight on Postgres.

The CLI is the operator: it sees every case (like an admin key), and what it creates has no
owning key, so through the API only admins see those (migration 015). Text is printed through
terminal_safe: titles and notes come from API callers.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from tracer.domain.errors import UserError
from tracer.store.urls import add_database_url
from tracer.textsafe import terminal_safe


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("cases", help="cases: investigations grouping traces, with notes")
    verbs = p.add_subparsers(dest="cases_command", metavar="{list,show,create,note}")
    verbs.required = True
    ls = verbs.add_parser("list", help="every case, newest first")
    ls.add_argument("--status", choices=("open", "closed", "archived"), action="append")
    ls.add_argument("--limit", type=int, default=100)
    ls.add_argument("--json", action="store_true")
    add_database_url(ls)
    ls.set_defaults(func=_list)
    sh = verbs.add_parser("show", help="one case: traces, shared addresses, notes, tags")
    sh.add_argument("case_id", type=int)
    sh.add_argument("--json", action="store_true")
    add_database_url(sh)
    sh.set_defaults(func=_show)
    c = verbs.add_parser("create", help="open a case and print its id")
    c.add_argument("title")
    c.add_argument("--description", default="")
    c.add_argument("--trace", type=int, action="append", default=[], help="a trace id to attach (repeat)")
    c.add_argument("--json", action="store_true")
    add_database_url(c)
    c.set_defaults(func=_create)
    n = verbs.add_parser("note", help="add a note to a case (or to an address in it with --address)")
    n.add_argument("case_id", type=int)
    n.add_argument("text")
    n.add_argument("--address", default=None, help="the note is about this address")
    n.add_argument("--chain", default="ethereum")
    n.add_argument("--author", default="cli")
    add_database_url(n)
    n.set_defaults(func=_note)


def _safe(text: str) -> str:
    return str(terminal_safe(text))


async def _list(args: argparse.Namespace) -> int:
    from tracer.store import cases as store
    from tracer.store.db import Database
    from tracer.store.ownership import Viewer

    async with await Database.connect(args.database_url, max_size=2) as db:
        async with db.pool.acquire() as conn:
            rows = await store.list_cases(conn, Viewer(everything=True), statuses=args.status,
                                          before_id=None, limit=max(1, args.limit))
    if args.json:
        print(json.dumps([{"id": c.id, "title": c.title, "status": c.status, "traces": list(c.trace_ids),
                           "created_at": c.created_at.isoformat(), "updated_at": c.updated_at.isoformat()}
                          for c in rows], indent=2))
        return 0
    if not rows:
        print("no cases")
        return 0
    print(f"{'id':>5}  {'status':<9} {'traces':<16} {'updated':<20} title")
    for c in rows:
        traces = ",".join(map(str, c.trace_ids)) or "-"
        print(f"{c.id:>5}  {c.status:<9} {traces[:16]:<16} {c.updated_at.isoformat()[:19]:<20} {_safe(c.title)}")
    return 0


async def _show(args: argparse.Namespace) -> int:
    from tracer.store import cases as store
    from tracer.store.db import Database
    from tracer.store.ownership import Viewer

    async with await Database.connect(args.database_url, max_size=2) as db:
        async with db.pool.acquire() as conn:
            case = await store.get_case(conn, args.case_id, Viewer(everything=True))
            if case is None:
                raise UserError(f"no case {args.case_id}")
            notes = await store.notes(conn, case.id)
            tags = await store.tags(conn, case.id)
            shared = await store.shared_addresses(conn, case.id)
    if args.json:
        out: dict[str, Any] = {
            "id": case.id, "title": case.title, "description": case.description, "status": case.status,
            "traces": list(case.trace_ids),
            "shared_addresses": [{"chain": c, "address": a, "traces": t} for c, a, t in shared],
            "notes": [{"id": n.id, "target_kind": n.target_kind, "target": n.target, "text": n.body,
                       "author": n.author, "created_at": n.created_at.isoformat()} for n in notes],
            "tags": [{"target_kind": t.target_kind, "target": t.target, "tag": t.tag} for t in tags]}
        print(json.dumps(out, indent=2))
        return 0
    print(f"case {case.id}: {_safe(case.title)} ({case.status})")
    if case.description:
        print(f"  {_safe(case.description)}")
    print(f"traces: {', '.join(map(str, case.trace_ids)) or '-'}")
    if shared:
        print("addresses reached by several of its traces:")
        for chain, address, traces in shared:
            print(f"  {chain}:{address}  traces {', '.join(map(str, traces))}")
    if tags:
        print("tags:")
        for t in tags:
            print(f"  {t.target_kind} {_safe(t.target) or '(case)'}: {_safe(t.tag)}")
    if notes:
        print("notes:")
        for n in notes:
            about = "" if n.target_kind == "case" else f" [{n.target_kind} {_safe(n.target)}]"
            print(f"  {n.created_at.isoformat()[:19]} {_safe(n.author or '-')}{about}: {_safe(n.body)}")
    return 0


async def _create(args: argparse.Namespace) -> int:
    from tracer.store import cases as store
    from tracer.store.db import Database
    from tracer.store.ownership import Owner

    title = args.title.strip()
    if not 1 <= len(title) <= 200:
        raise UserError("the title must be 1 to 200 characters")
    async with await Database.connect(args.database_url, max_size=2) as db:
        async with db.pool.acquire() as conn:
            try:
                case = await store.create_case(conn, title=title, description=args.description, status="open",
                                               owner=Owner(None, None), created_by="cli", trace_ids=args.trace)
            except store.MissingTraces as exc:
                raise UserError(str(exc)) from None
    print(json.dumps({"id": case.id, "traces": list(case.trace_ids)}) if args.json else f"case {case.id}")
    return 0


async def _note(args: argparse.Namespace) -> int:
    from tracer.addresses import InvalidAddress, normalize_address
    from tracer.store import cases as store
    from tracer.store.db import Database
    from tracer.store.ownership import Viewer

    text = args.text.strip()
    if not 1 <= len(text) <= 20000:
        raise UserError("the note must be 1 to 20000 characters")
    kind, target = "case", ""
    if args.address:
        try:
            kind, target = "address", f"{args.chain}:{normalize_address(args.chain, args.address)}"
        except InvalidAddress as exc:
            raise UserError(f"invalid address: {exc.reason}") from None
    async with await Database.connect(args.database_url, max_size=2) as db:
        async with db.pool.acquire() as conn:
            if await store.get_case(conn, args.case_id, Viewer(everything=True)) is None:
                raise UserError(f"no case {args.case_id}")
            note = await store.add_note(conn, args.case_id, target_kind=kind, target=target, body=text,
                                        author=args.author, author_key_id=None)
    print(f"note {note.id} on case {args.case_id}")
    return 0
