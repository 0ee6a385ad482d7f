"""The shipped default label set is what its build script makes from the public data it names
(tracer/data/labels/SOURCES.md): rebuilt from ../shared/data, the CSV and the manifest are the same
to the byte, and SOURCES.md's counts are the build's. A hand edit, or a builder change nobody
re-ran, fails here.

The data sits beside the checkout (TRACER_SHARED_DATA points elsewhere); without it there is
nothing to rebuild from and the test skips."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tracer.labels import build_default as bd

DATA = Path(os.environ.get("TRACER_SHARED_DATA") or bd.DEFAULT_DATA)


@pytest.mark.skipif(not (DATA / "ofac").is_dir(), reason=f"no shared data at {DATA}")
def test_the_shipped_default_labels_are_what_the_build_makes() -> None:
    rows, manifest, skipped = bd.build(DATA)
    shipped = bd.DEFAULT_OUT / bd.CSV_NAME
    rebuilt = bd.render_csv(rows).splitlines(keepends=True)
    lines = shipped.read_text(encoding="utf-8").splitlines(keepends=True)
    differ = [f"line {i + 1}: shipped {a[:90]!r} built {b[:90]!r}"
              for i, (a, b) in enumerate(zip(lines, rebuilt, strict=False)) if a != b]
    assert (len(lines), differ[:5]) == (len(rebuilt), [])
    assert json.loads((bd.DEFAULT_OUT / bd.MANIFEST_NAME).read_text(encoding="utf-8")) == manifest
    # Tron rows are written as people know the addresses (T...), like every export.
    tron = [ln for ln in lines if ln.startswith("tron,")]
    assert tron and all(ln.split(",")[1].startswith("T") for ln in tron)

    # SOURCES.md's figures are this build's.
    sources = (bd.DEFAULT_OUT / "SOURCES.md").read_text(encoding="utf-8")
    table = {m[1]: int(m[2]) for m in re.finditer(r"^\| ([a-z_]+) \| (\d+) \|", sources, re.M)}
    assert table == manifest["by_category"]
    lost = re.search(r"Left out on purpose: (\d+) OFAC base58 addresses", sources)
    assert lost and int(lost[1]) == skipped["ofac base58 address with lost letter case"]
