"""ETL: a month of US flights — read, clean, join, aggregate with Arrow, write Parquet.

    airports.csv ─▶ airports ─┬────────────────────────────┐
    carriers.csv ─▶ carriers ─┼─▶ flights ══▶ cleaned ──▶ enriched ─┬─▶ by_carrier ─┐
                              │   (generated   (map over    (joins,  ├─▶ by_state ───┼─▶ written
                              │    or read)     row chunks)  distance)└─▶ routes ─────┘  (Parquet)
                              └────────────────────────────────────┘

``airports`` is a real table (3,376 US airports with state and coordinates,
public domain, from the ``vega_datasets`` package) and ``carriers`` a small
dimension table of real airlines with their hubs and approximate market
shares. ``flights`` is the fact table: ``rows`` synthetic flights of one
``month`` (carriers by market share, origins weighted towards each carrier's
hubs, gamma-distributed delays scaled by ``delay_scale``), generated inside
the pipeline — or, with ``source``, read from a CSV or Parquet file with the
same columns. Like real feeds it is dirty: carrier codes in mixed case with
stray spaces, sentinel delays (``-9999``), flights whose origin is their
destination, airport codes that do not exist.

``cleaned`` is mapped over the fact table's row chunks (each call gets a
zero-copy ``Table.slice``, in parallel) and concatenated back into one table
(``concat=True``); ``enriched`` joins it to both dimension tables and computes
great-circle distances with ``pyarrow.compute``; three ``group_by``
aggregates follow; ``written`` stores everything as Parquet under ``out_dir``
and returns that directory.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dagrun import stage
from pipelines import data_path

SENTINEL = -9999.0  # what the "feed" writes for a delay it could not measure
DELAY_RANGE = (-90.0, 1800.0)  # minutes; anything outside is a recording error
EARTH_RADIUS_MILES = 3958.8
FLIGHT_COLUMNS = ("flight_date", "carrier", "flight_number", "origin", "dest", "dep_hour",
                  "dep_delay", "arr_delay")


@stage
def airports(airports_csv: str = "data/airports.csv") -> pa.Table:
    """Read the airports dimension table (IATA code, name, city, state, coordinates)."""
    from pyarrow import csv

    return csv.read_csv(data_path(airports_csv))


@stage
def carriers(carriers_csv: str = "data/carriers.csv") -> pa.Table:
    """Read the carriers dimension table (code, name, ``;``-separated hubs, market share)."""
    from pyarrow import csv

    return csv.read_csv(data_path(carriers_csv))


@stage
def flights(airports: pa.Table, carriers: pa.Table, rows: int = 2_000_000, month: int = 6,
            year: int = 2024, delay_scale: float = 1.0, seed: int = 0,
            source: str = "") -> pa.Table:
    """The raw fact table: read from ``source`` (.csv or .parquet) when given, else
    ``rows`` synthetic flights of ``month``/``year``, dirty like a real feed."""
    if source:
        path = data_path(source)
        if path.suffix == ".csv":
            from pyarrow import csv

            return csv.read_csv(path)
        import pyarrow.parquet as pq

        return pq.read_table(path)
    return generate_flights(airports, carriers, rows, month, year, delay_scale, seed)


def generate_flights(airports: pa.Table, carriers: pa.Table, rows: int, month: int, year: int,
                     delay_scale: float, seed: int) -> pa.Table:
    """Synthetic flights between real airports; see the module docstring."""
    rng = np.random.default_rng(seed)
    codes = np.array(airports["iata"].to_pylist(), dtype=object)
    names = airports["name"].to_pylist()
    # Larger airports: international ones and every carrier's hub, Zipf-weighted.
    hubs = [h.split(";") for h in carriers["hubs"].to_pylist()]
    big = sorted({c for c, n in zip(codes, names, strict=True) if "Intl" in n}
                 | {h for hs in hubs for h in hs})
    big = rng.permutation(big)
    weights = 1 / np.arange(1, len(big) + 1) ** 0.6
    small = np.array([c for c in codes if len(c) == 3 and c.isalpha()], dtype=object)

    def airports_drawn(n: int) -> np.ndarray:
        picked = big[rng.choice(len(big), n, p=weights / weights.sum())]
        regional = rng.random(n) < 0.15
        picked[regional] = small[rng.integers(0, len(small), regional.sum())]
        return picked

    share = np.array(carriers["share"].to_pylist())
    carrier = rng.choice(len(share), rows, p=share / share.sum())
    hub_table = np.array([hs + [hs[0]] * (6 - len(hs)) for hs in hubs], dtype=object)
    hub_count = np.array([len(hs) for hs in hubs])
    origin = airports_drawn(rows)
    from_hub = rng.random(rows) < 0.5
    pick = (rng.random(rows) * hub_count[carrier]).astype(np.int64)
    origin[from_hub] = hub_table[carrier[from_hub], pick[from_hub]]
    dest = airports_drawn(rows)
    to_hub = ~from_hub & (rng.random(rows) < 0.6)
    dest[to_hub] = hub_table[carrier[to_hub], pick[to_hub]]

    dep_delay = (rng.gamma(0.6, 30.0, rows) - 8.0) * delay_scale
    arr_delay = dep_delay + rng.normal(-4.0, 9.0, rows)
    cancelled = rng.random(rows) < 0.02 * delay_scale
    broken = rng.random(rows) < 0.0005
    dep_delay[broken] = SENTINEL
    carrier_codes = np.array(carriers["code"].to_pylist(), dtype=object)[carrier]
    messy = rng.random(rows) < 0.01
    carrier_codes[messy] = [f" {c.lower()} " for c in carrier_codes[messy]]
    origin[rng.random(rows) < 0.0002] = "ZZZ"  # not an airport: dropped by the join

    first = np.datetime64(f"{year:04d}-{month:02d}", "M")
    start = first.astype("datetime64[D]")
    length = ((first + 1).astype("datetime64[D]") - start).astype(np.int64)
    dates = start + rng.integers(0, length, rows).astype("timedelta64[D]")
    return pa.table({
        "flight_date": pa.array(dates, pa.date32()),
        "carrier": pa.array(carrier_codes, pa.string()),
        "flight_number": pa.array(rng.integers(1, 7000, rows), pa.int32()),
        "origin": pa.array(origin, pa.string()),
        "dest": pa.array(dest, pa.string()),
        "dep_hour": pa.array(rng.integers(5, 24, rows), pa.int8()),
        "dep_delay": pa.array(dep_delay.astype(np.float32), mask=cancelled),
        "arr_delay": pa.array(arr_delay.astype(np.float32), mask=cancelled),
    })


@stage(map="flights", concat=True)
def cleaned(flights: pa.Table) -> pa.Table:
    """Per row chunk (a zero-copy slice): normalise carrier codes, drop flights to their own
    origin and impossible delays, flag cancellations and on-time arrivals."""
    carrier = pc.utf8_upper(pc.utf8_trim_whitespace(flights["carrier"]))
    table = flights.set_column(flights.schema.get_field_index("carrier"), "carrier", carrier)
    low, high = DELAY_RANGE
    delay = table["dep_delay"]
    in_range = pc.and_(pc.greater_equal(delay, low), pc.less_equal(delay, high))
    plausible = pc.or_kleene(pc.is_null(delay), in_range)  # null: cancelled, kept
    keep = pc.and_(pc.not_equal(table["origin"], table["dest"]), plausible)
    table = table.filter(keep)
    table = table.append_column("cancelled", pc.is_null(table["dep_delay"]))
    return table.append_column("on_time", pc.less_equal(table["arr_delay"], 15.0))


@stage
def enriched(cleaned: pa.Table, airports: pa.Table, carriers: pa.Table) -> pa.Table:
    """Join each flight to its carrier's name and both airports' states and coordinates
    (unknown codes drop out), and add the great-circle distance in miles."""
    where = airports.select(["iata", "state", "latitude", "longitude"])
    table = cleaned.join(where.rename_columns(["origin", "origin_state", "lat1", "lon1"]),
                         "origin", join_type="inner")
    table = table.join(where.rename_columns(["dest", "dest_state", "lat2", "lon2"]),
                       "dest", join_type="inner")
    names = carriers.select(["code", "name"]).rename_columns(["carrier", "carrier_name"])
    table = table.join(names, "carrier", join_type="inner")
    distance = haversine(table["lat1"], table["lon1"], table["lat2"], table["lon2"])
    table = table.append_column("distance_miles", distance)
    return table.drop_columns(["lat1", "lon1", "lat2", "lon2"]).sort_by(
        [("flight_date", "ascending"), ("dep_hour", "ascending")])


def haversine(lat1: pa.ChunkedArray, lon1: pa.ChunkedArray, lat2: pa.ChunkedArray,
              lon2: pa.ChunkedArray) -> pa.ChunkedArray:
    """Great-circle distance in miles between two arrays of coordinates (degrees)."""
    radians = np.pi / 180
    p1, p2 = pc.multiply(lat1, radians), pc.multiply(lat2, radians)
    dlat = pc.subtract(p2, p1)
    dlon = pc.multiply(pc.subtract(lon2, lon1), radians)
    a = pc.add(pc.power(pc.sin(pc.divide(dlat, 2)), 2),
               pc.multiply(pc.multiply(pc.cos(p1), pc.cos(p2)),
                           pc.power(pc.sin(pc.divide(dlon, 2)), 2)))
    return pc.multiply(pc.asin(pc.sqrt(a)), 2 * EARTH_RADIUS_MILES)


def _rates(table: pa.Table) -> pa.Table:
    """Booleans as 0/1 so that their mean is a rate."""
    for name in ("cancelled", "on_time"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, pc.cast(table[name], pa.float64()))
    return table


@stage
def by_carrier(enriched: pa.Table) -> pa.Table:
    """Per airline: flights, cancellation and on-time rates, mean and median departure delay,
    miles flown; busiest first."""
    grouped = _rates(enriched).group_by("carrier_name").aggregate([
        ("flight_number", "count"), ("cancelled", "mean"), ("on_time", "mean"),
        ("dep_delay", "mean"), ("dep_delay", "approximate_median"), ("distance_miles", "sum"),
    ])
    grouped = grouped.rename_columns(["carrier_name", "flights", "cancelled_rate", "on_time_rate",
                                      "mean_dep_delay", "median_dep_delay", "miles"])
    return grouped.sort_by([("flights", "descending"), ("carrier_name", "ascending")])


@stage
def by_state(enriched: pa.Table) -> pa.Table:
    """Per origin state: departures, mean departure delay, cancellation rate; busiest first."""
    grouped = _rates(enriched).group_by("origin_state").aggregate([
        ("flight_number", "count"), ("dep_delay", "mean"), ("cancelled", "mean"),
    ])
    grouped = grouped.rename_columns(["state", "departures", "mean_dep_delay",
                                      "cancelled_rate"])
    return grouped.sort_by([("departures", "descending"), ("state", "ascending")])


@stage
def routes(enriched: pa.Table, top: int = 20) -> pa.Table:
    """The ``top`` busiest airport pairs with their distance and mean arrival delay."""
    grouped = enriched.group_by(["origin", "dest"]).aggregate([
        ("flight_number", "count"), ("distance_miles", "mean"), ("arr_delay", "mean"),
    ])
    grouped = grouped.rename_columns(["origin", "dest", "flights", "distance_miles",
                                      "mean_arr_delay"])
    ranked = grouped.sort_by([("flights", "descending"), ("origin", "ascending"),
                              ("dest", "ascending")])
    # take, not slice: a slice would carry (and pickle) the whole table's buffers
    return ranked.take(pa.array(range(min(top, ranked.num_rows)), pa.int64()))


@stage
def written(enriched: pa.Table, by_carrier: pa.Table, by_state: pa.Table, routes: pa.Table,
            out_dir: str = "out/etl") -> str:
    """Write the enriched flights and the three aggregates as Parquet under ``out_dir``;
    return the directory."""
    import pyarrow.parquet as pq

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tables = {"flights": enriched, "by_carrier": by_carrier, "by_state": by_state,
              "routes": routes}
    for name, table in tables.items():
        pq.write_table(table, folder / f"{name}.parquet")
    print(f"etl: {enriched.num_rows:,} flights; Parquet files in {folder}/ "
          f"({', '.join(f'{n}.parquet' for n in tables)})", file=sys.stderr)
    return str(folder)
