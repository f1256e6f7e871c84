"""Composed: the ETL module included twice (two months), the image module once, and
stages that join their results.

    june.*  (pipelines.etl, month=6)           ─┐
    july.*  (pipelines.etl, month=7, stormier) ─┼─▶ carrier_change ─┐
    photos.* (pipelines.images, small)         ─┴───────────────────┴─▶ summary

``dagrun.include(module, prefix=..., params=...)`` is the ``functools.partial``
of whole pipeline modules: every stage of the module is copied under the
prefix (``june.flights``, ``june.cleaned``, …), the copies feed each other,
and ``params`` binds their parameters — here a different month, seed, delay
scale and output folder for each copy. ``dagrun.bind`` wires a plain
function to stages by name (``inputs``), which is how ``carrier_change``
reads both months' ``by_carrier`` tables.

A run-time ``--param july.rows=100000`` overrides a bound value of one copy;
``--param rows=100000`` sets it wherever it is not bound.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from dagrun import bind, include
from pipelines import etl, images

june = include(etl, prefix="june", params={
    "month": 6, "seed": 6, "rows": 1_000_000, "out_dir": "out/composed/june",
})
july = include(etl, prefix="july", params={
    "month": 7, "seed": 7, "rows": 1_000_000, "delay_scale": 1.4, "out_dir": "out/composed/july",
})
photos = include(images, prefix="photos", params={
    "noise_levels": 4, "out_dir": "out/composed/images",
})


def compare_carriers(before: pa.Table, after: pa.Table) -> pa.Table:
    """Per airline, the change from the first month to the second: flights, mean departure
    delay and on-time rate (joined on the airline's name); worst change first."""
    keep = ["carrier_name", "flights", "mean_dep_delay", "on_time_rate"]
    joined = before.select(keep).join(
        after.select(keep), "carrier_name", left_suffix="_before", right_suffix="_after"
    )
    for column in ("flights", "mean_dep_delay", "on_time_rate"):
        change = pc.subtract(joined[f"{column}_after"], joined[f"{column}_before"])
        joined = joined.append_column(f"{column}_change", change)
    return joined.sort_by([("mean_dep_delay_change", "descending"),
                           ("carrier_name", "ascending")])


def summarise(carrier_change: pa.Table, june_dir: str, july_dir: str, image_stats: str,
              out_dir: str = "out/composed") -> str:
    """Write ``carrier_change.parquet`` and a ``summary.json`` naming every output of the
    run; return the summary's path."""
    import pyarrow.parquet as pq

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    change = folder / "carrier_change.parquet"
    pq.write_table(carrier_change, change)
    worst = carrier_change.slice(0, 1).to_pylist()
    summary = {
        "etl": {"june": june_dir, "july": july_dir},
        "images": image_stats,
        "carrier_change": str(change),
        "largest_delay_increase": worst[0] if worst else None,
    }
    path = folder / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"composed: summary of every output in {path}", file=sys.stderr)
    return str(path)


carrier_change = bind(compare_carriers, name="carrier_change",
                      inputs={"before": "june.by_carrier", "after": "july.by_carrier"})
summary = bind(summarise, name="summary", inputs={
    "carrier_change": "carrier_change", "june_dir": "june.written",
    "july_dir": "july.written", "image_stats": "photos.report",
})
