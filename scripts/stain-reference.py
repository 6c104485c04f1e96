#!/usr/bin/env python3
"""Reference Macenko results from torchstain (numpy backend) for edge/tests/colour.rs.

usage: stain-reference.py OUT_DIR IMAGE...

For each image: torchstain's fitted stain matrix HE (3x2, rows R,G,B; columns H,E) and 99th
percentile concentrations maxC (its `fit`), and the image normalised to torchstain's default
reference (its `normalize`), saved as OUT_DIR/<n>.png. Writes OUT_DIR/reference.json. Runs in
target/colour-venv (numpy, pillow, torchstain; torch is not needed for the numpy backend).
"""
import json
from importlib.metadata import version
import sys
from pathlib import Path

import numpy as np
from PIL import Image
import torchstain


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n, path in enumerate(sys.argv[2:]):
        img = np.asarray(Image.open(path).convert("RGB"))
        fitter = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
        fitter.fit(img)  # Io=240, alpha=1, beta=0.15
        normaliser = torchstain.normalizers.MacenkoNormalizer(backend="numpy")
        norm, _, _ = normaliser.normalize(I=img, stains=False)
        png = out / f"{n}.png"
        Image.fromarray(norm).save(png)
        rows.append({
            "path": path,
            "he": np.asarray(fitter.HERef).tolist(),
            "max_c": np.asarray(fitter.maxCRef).tolist(),
            "normalised": str(png),
            "torchstain": version("torchstain"),
        })
    (out / "reference.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
