"""Images: denoise and edge-detect a batch of real photographs in parallel, then summarise.

    catalog ──▶ images ══▶ filtered (map: a task per batch of images) ──▶ stats ──▶ report
    (paths,     (one stacked                (per image: denoised luma       (Arrow     (Parquet +
     noise       uint8 array in              + edge magnitude, each a        table)    edge sheet)
     levels)     shared memory)              float32 array in shared memory)

The seed's real-world scenario as a pipeline. ``images`` decodes the PNGs in
``data/images/`` (CC0 / public-domain samples from scikit-image) once and
stacks them, each at several levels of simulated sensor noise, into one
``(n, size, size, 3)`` uint8 array allocated with ``dagrun.empty``: it lives
in shared memory from the start and is handed on without a copy.
``filtered`` is mapped over it: each worker gets zero-copy views of single
images (slices along axis 0 of the shared array) and runs a CPU-heavy,
edge-preserving bilateral filter and a Sobel edge detector, written with
numpy. ``stats`` reduces everything to one row of statistics per image,
including how much the filter recovered (PSNR of the noisy and of the
denoised image against the clean photo); ``report`` writes them as Parquet,
plus a contact sheet of the edge maps, and returns the Parquet file's path.

Parameters (``--param NAME=VALUE``): ``image_dir``, ``noise_levels`` (copies
of each photo, the first clean), ``noise_step`` (noise σ added per level, in
[0, 1] intensity units), ``seed``, ``size``, ``radius``, ``sigma_space``,
``sigma_color``, ``edge_threshold``, ``out_dir``.

The filter functions (``bilateral``, ``sobel``, ``luminance``, ``enhance``,
``image_stats``) are plain numpy functions, reusable without dagrun (the
``multiprocessing.Pool`` comparison in ``tests/bench/seed_images.py`` uses them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import dagrun
from dagrun import stage
from pipelines import data_path

LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)  # Rec. 709


# -- numpy kernels (no dagrun inside) ------------------------------------------
def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``image`` (uint8) plus Gaussian noise of standard deviation ``sigma`` (in [0, 1] units)."""
    if sigma <= 0:
        return image
    noise = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma * 255)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two images in [0, 1] (higher: closer)."""
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 luma of an ``(h, w, 3)`` float image."""
    return rgb @ LUMA


def bilateral(rgb: np.ndarray, radius: int = 3, sigma_space: float = 2.0,
              sigma_color: float = 0.12) -> np.ndarray:
    """Edge-preserving smoothing of an ``(h, w, 3)`` float32 image in [0, 1].

    Each pixel becomes the average of its ``(2r+1)²`` neighbours weighted by
    distance (``sigma_space``, pixels) and by colour difference
    (``sigma_color``): noise is smoothed, edges are kept. O(r² · pixels).
    """
    h, w = rgb.shape[:2]
    r = radius
    padded = np.pad(rgb, ((r, r), (r, r), (0, 0)), mode="reflect")
    total = np.zeros_like(rgb)
    weights = np.zeros((h, w), np.float32)
    color_k = np.float32(-0.5 / sigma_color**2)
    diff = np.empty_like(rgb)
    dist = np.empty((h, w), np.float32)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            space_w = np.float32(np.exp(-(dx * dx + dy * dy) / (2 * sigma_space**2)))
            shifted = padded[r + dy:r + dy + h, r + dx:r + dx + w]
            np.subtract(shifted, rgb, out=diff)
            np.einsum("ijk,ijk->ij", diff, diff, out=dist)
            weight = np.exp(dist * color_k) * space_w
            total += weight[..., None] * shifted
            weights += weight
    return total / weights[..., None]


def sobel(gray: np.ndarray) -> np.ndarray:
    """Gradient magnitude of a 2-D image (Sobel operator, reflected borders)."""
    p = np.pad(gray, 1, mode="reflect")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy)


def enhance(image: np.ndarray, radius: int = 3, sigma_space: float = 2.0,
            sigma_color: float = 0.12) -> np.ndarray:
    """``(2, h, w)`` float32: the bilateral-smoothed luma and its Sobel edge magnitude."""
    rgb = image.astype(np.float32) / np.float32(255)
    smooth = luminance(bilateral(rgb, radius, sigma_space, sigma_color))
    out = np.empty((2, *smooth.shape), np.float32)
    out[0] = smooth
    out[1] = sobel(smooth)
    return out


def image_stats(image: np.ndarray, filtered: np.ndarray, clean: np.ndarray,
                edge_threshold: float) -> dict[str, float]:
    """One row of statistics for an ``(h, w, 3)`` uint8 image, its ``enhance`` output and
    the clean photo it was made from (uint8, same shape)."""
    rgb = image.astype(np.float32) / np.float32(255)
    luma = luminance(rgb)
    truth = luminance(clean.astype(np.float32) / np.float32(255))
    smooth, edges = filtered[0], filtered[1]
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return {
        "mean_luma": float(luma.mean()),
        "contrast": float(luma.std()),
        # Hasler & Süsstrunk (2003): 0 for grey images, ~0.5 for vivid ones.
        "colorfulness": float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean())),
        "removed": float((luma - smooth).std()),  # what the bilateral filter took away
        "psnr_noisy": psnr(luma, truth),
        "psnr_denoised": psnr(smooth, truth),
        "sharpness": float(edges.mean()),
        "edge_density": float((edges > edge_threshold).mean()),
    }


# -- stages ----------------------------------------------------------------------
@stage
def catalog(image_dir: str = "data/images", noise_levels: int = 8,
            noise_step: float = 0.02) -> pa.Table:
    """List the PNG files of ``image_dir`` (sorted), each at ``noise_levels`` levels of
    simulated noise: level ``k`` adds Gaussian noise of σ = ``k * noise_step``."""
    if noise_levels < 1:
        msg = f"noise_levels must be at least 1 (level 0 is the clean photo), got {noise_levels}"
        raise ValueError(msg)
    folder = data_path(image_dir)
    paths = sorted(folder.glob("*.png"))
    if not paths:
        msg = f"no .png files in {folder}"
        raise FileNotFoundError(msg)
    rows = [(str(p), p.stem, k, k * noise_step) for p in paths for k in range(noise_levels)]
    path, name, level, sigma = zip(*rows, strict=True)
    return pa.table({"path": path, "image": name, "level": pa.array(level, pa.int32()),
                     "sigma": pa.array(sigma, pa.float64())})


@stage
def images(catalog: pa.Table, size: int = 256, seed: int = 0) -> np.ndarray:
    """Decode each photo once, fit it to ``size``×``size`` RGB and write its noisy copies
    into one ``(n, size, size, 3)`` uint8 array allocated in shared memory."""
    from PIL import Image, ImageOps

    paths = catalog["path"].to_pylist()
    sigmas = catalog["sigma"].to_pylist()
    stack = dagrun.empty((len(paths), size, size, 3), np.uint8)
    rng = np.random.default_rng(seed)
    decoded: dict[str, np.ndarray] = {}
    for row, (path, sigma) in enumerate(zip(paths, sigmas, strict=True)):
        if path not in decoded:
            with Image.open(path) as picture:
                fitted = ImageOps.fit(picture.convert("RGB"), (size, size),
                                      Image.Resampling.LANCZOS)
            decoded[path] = np.asarray(fitted)
        stack[row] = add_noise(decoded[path], sigma, rng)
    return stack


@stage(map="images")
def filtered(images: np.ndarray, radius: int = 3, sigma_space: float = 2.0,
             sigma_color: float = 0.12) -> np.ndarray:
    """Per image (a zero-copy view of the shared stack): bilateral-smoothed luma and Sobel
    edges, as a ``(2, size, size)`` float32 array."""
    return enhance(images, radius, sigma_space, sigma_color)


@stage
def stats(catalog: pa.Table, images: np.ndarray, filtered: list[np.ndarray],
          edge_threshold: float = 0.25) -> pa.Table:
    """Reduce: one row per image — brightness, contrast, colourfulness, what the filter
    removed, PSNR against the clean photo before and after denoising, sharpness, edge
    density — next to the catalog's columns."""
    names = catalog["image"].to_pylist()
    clean = {}  # the first (least noisy) copy of each photo stands for the clean one
    for row, name in enumerate(names):
        clean.setdefault(name, row)
    rows = [
        image_stats(images[i], f, images[clean[names[i]]], edge_threshold)
        for i, f in enumerate(filtered)
    ]
    table = catalog.select(["image", "level", "sigma"])
    for key in rows[0] if rows else ():
        table = table.append_column(key, pa.array([r[key] for r in rows], pa.float64()))
    return table


@stage
def report(stats: pa.Table, filtered: list[np.ndarray], out_dir: str = "out/images") -> str:
    """Write ``stats.parquet`` and ``edges.png`` (a contact sheet of edge maps) into
    ``out_dir``; return the Parquet file's path."""
    import pyarrow.parquet as pq

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "stats.parquet"
    pq.write_table(stats, target)
    sheet = folder / "edges.png"
    levels = pc.max(stats["level"]).as_py() if stats.num_rows else 0
    _contact_sheet([f[1] for f in filtered], sheet, columns=(levels or 0) + 1)
    print(f"images: {stats.num_rows} images; statistics in {target}, edge maps in {sheet}",
          file=sys.stderr)
    return str(target)


def _contact_sheet(maps: list[np.ndarray], path: Path, columns: int = 8) -> None:
    """Edge maps at half resolution, ``columns`` to a row, as one greyscale PNG."""
    from PIL import Image

    if not maps:
        return
    thumbs = [np.clip(m[::2, ::2] * 255, 0, 255).astype(np.uint8) for m in maps]
    h, w = thumbs[0].shape
    rows = -(-len(thumbs) // columns)
    sheet = np.zeros((rows * h, min(columns, len(thumbs)) * w), np.uint8)
    for i, thumb in enumerate(thumbs):
        r, c = divmod(i, columns)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = thumb
    Image.fromarray(sheet).save(path, compress_level=1)
