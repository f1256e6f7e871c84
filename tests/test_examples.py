"""The example pipelines in ``pipelines/`` run end to end, with small parameters, and
produce what they promise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyarrow import csv

import dagrun
from pipelines import etl, images
from tests.conftest import ROOT

SMALL_IMAGES = {"size": 96, "noise_levels": 3}  # 72 KB per result: shared memory
PHOTOS = len(list((ROOT / "data" / "images").glob("*.png")))


def run(pipeline: str, state_dir: Path, params: dict, **kwargs):
    return dagrun.run(pipeline, params=params, state_dir=state_dir, log_format="none",
                      workers=2, start_method="fork", **kwargs)


def finished(result, stage: str) -> list[dict]:
    events = [json.loads(line) for line in result.events_path.read_text().splitlines()]
    return [e for e in events if e["event"] == "task_finished" and e["stage"] == stage]


def test_data_is_small():
    """The sample inputs that ship with the repository stay under 5 MB."""
    size = sum(p.stat().st_size for p in (ROOT / "data").rglob("*") if p.is_file())
    assert PHOTOS >= 6 and size < 5_000_000


@pytest.mark.slow
def test_images_pipeline(state_dir, tmp_path):
    """Every photo at every noise level is filtered in batches, through shared memory,
    and summarised into one Parquet row per image; denoising raises the PSNR of noisy ones."""
    out = tmp_path / "images"
    with run("pipelines.images", state_dir, {**SMALL_IMAGES, "out_dir": str(out)}) as result:
        assert result.ok, result.errors
        path = result["report"]
        stacked = finished(result, "images")
        batches = finished(result, "filtered")
    assert path == str(out / "stats.parquet") and (out / "edges.png").stat().st_size > 0
    assert stacked[0]["transport"] == "shm"  # allocated with dagrun.empty: no copy
    assert len(batches) > 1 and all("shm" in e["transport"] for e in batches)
    table = pq.read_table(path)
    assert table.num_rows == PHOTOS * 3
    assert table["level"].to_pylist() == [0, 1, 2] * PHOTOS
    noisy = table.filter(pc.equal(table["level"], 2))  # σ = 0.04: the filter must help
    gain = pc.subtract(noisy["psnr_denoised"], noisy["psnr_noisy"])
    assert pc.min(gain).as_py() > 0
    assert pc.all(pc.less(table["edge_density"], 1.0)).as_py()


def test_image_kernels_are_plain_numpy():
    """The filter functions work on their own: a flat image has no edges."""
    import numpy as np

    flat = np.full((16, 16, 3), 128, np.uint8)
    out = images.enhance(flat, radius=2)
    assert out.shape == (2, 16, 16) and out.dtype == np.float32
    assert np.allclose(out[0], 128 / 255, atol=1e-3) and np.allclose(out[1], 0, atol=1e-5)


@pytest.mark.slow
def test_etl_pipeline(state_dir, tmp_path):
    """Generated flights are cleaned chunk by chunk, joined, aggregated and written."""
    out = tmp_path / "etl"
    with run("pipelines.etl", state_dir, {"rows": 30_000, "out_dir": str(out)}) as result:
        assert result.ok, result.errors
        assert result["written"] == str(out)
        chunks = finished(result, "cleaned")
    assert len(chunks) == 8 and sum(e["items"] for e in chunks) == 30_000  # 4 per worker
    flights = pq.read_table(out / "flights.parquet")
    assert 28_000 < flights.num_rows < 30_000  # dirty rows dropped, the rest kept
    carriers = set(csv.read_csv(ROOT / "data" / "carriers.csv")["code"].to_pylist())
    assert set(flights["carrier"].to_pylist()) <= carriers
    assert not pc.any(pc.equal(flights["origin"], flights["dest"])).as_py()
    assert pc.min(flights["dep_delay"]).as_py() >= -90
    assert flights["origin_state"].null_count == 0
    assert pc.min(flights["distance_miles"]).as_py() > 0
    by_carrier = pq.read_table(out / "by_carrier.parquet")
    assert pc.sum(by_carrier["flights"]).as_py() == flights.num_rows
    rate = pc.mean(by_carrier["cancelled_rate"]).as_py()
    assert 0.005 < rate < 0.05
    by_state = pq.read_table(out / "by_state.parquet")
    assert pc.sum(by_state["departures"]).as_py() == flights.num_rows
    assert pq.read_table(out / "routes.parquet").num_rows == 20


@pytest.mark.slow
def test_etl_reads_a_csv_source(state_dir, tmp_path):
    """With ``source`` the fact table is read from a CSV file instead of generated."""
    airports = csv.read_csv(ROOT / "data" / "airports.csv")
    carriers = csv.read_csv(ROOT / "data" / "carriers.csv")
    raw = etl.generate_flights(airports, carriers, 5_000, 3, 2024, 1.0, seed=1)
    source = tmp_path / "flights.csv"
    csv.write_csv(raw, source)
    params = {"source": str(source), "out_dir": str(tmp_path / "out")}
    with run("pipelines.etl", state_dir, params, targets=["by_carrier", "enriched"]) as result:
        assert result.ok, result.errors
        enriched = result["enriched"]
        assert pc.sum(result["by_carrier"]["flights"]).as_py() == enriched.num_rows
        months = pc.unique(pc.month(enriched["flight_date"])).to_pylist()
    assert months == [3] and 4_500 < enriched.num_rows <= 5_000


@pytest.mark.slow
def test_composed_pipeline(state_dir, tmp_path):
    """One module included twice under prefixes with different bound parameters, another
    once, and stages joining them."""
    params = {
        "june.rows": 8_000, "july.rows": 8_000, "june.out_dir": str(tmp_path / "june"),
        "july.out_dir": str(tmp_path / "july"), "photos.out_dir": str(tmp_path / "photos"),
        "photos.size": 64, "photos.noise_levels": 1, "out_dir": str(tmp_path),
    }
    with run("pipelines.composed", state_dir, params) as result:
        assert result.ok, result.errors
        summary = json.loads(Path(result["summary"]).read_text())
    assert summary["etl"] == {"june": str(tmp_path / "june"), "july": str(tmp_path / "july")}
    june = pq.read_table(tmp_path / "june" / "flights.parquet")
    july = pq.read_table(tmp_path / "july" / "flights.parquet")
    assert pc.unique(pc.month(june["flight_date"])).to_pylist() == [6]
    assert pc.unique(pc.month(july["flight_date"])).to_pylist() == [7]
    change = pq.read_table(summary["carrier_change"])
    assert change.num_rows == 14
    # July is bound to a stormier delay_scale: delays rise for nearly every airline.
    assert pc.mean(change["mean_dep_delay_change"]).as_py() > 0
    assert pq.read_table(summary["images"]).num_rows == PHOTOS


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="POSIX shared memory layout")
def test_cli_runs_the_flagship(state_dir, tmp_path):
    """``dagrun run pipelines.images`` from the repository root exits 0 and says where the
    statistics are."""
    out = tmp_path / "cli"
    command = [sys.executable, "-m", "dagrun", "run", "pipelines.images", "--workers", "2",
               "--state-dir", str(state_dir), "-p", "size=64", "-p", "noise_levels=1",
               "-p", f"out_dir={out}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(out / "stats.parquet") in done.stdout + done.stderr
    assert pq.read_table(out / "stats.parquet").num_rows == PHOTOS
