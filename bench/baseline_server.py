"""The floor every serving figure is compared with: the server a user would write in 30 lines.

FastAPI, `await file.read()`, Pillow decode + resize + normalise + `session.run` in `asyncio.to_thread`, batch 1,
onnxruntime's default session options. Same preprocessing as the bundle (squash resize, bilinear, mean/std).

    BASELINE_MODEL=models/demo/1 uvicorn bench.baseline_server:app --port 8001
"""

import asyncio
import io
import json
import os
from pathlib import Path
from typing import Annotated

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, File, UploadFile
from PIL import Image

bundle = Path(os.environ["BASELINE_MODEL"])
spec = json.loads((bundle / "manifest.json").read_text())["input"]
session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
mean, std = np.array(spec["mean"], np.float32) * 255, np.array(spec["std"], np.float32) * 255
app = FastAPI()


def infer(data: bytes) -> list[float]:
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((spec["width"], spec["height"]), Image.BILINEAR)
    tensor = ((np.asarray(image, np.float32) - mean) / std).transpose(2, 0, 1)[None]
    logits = session.run(["logits"], {"images": np.ascontiguousarray(tensor)})[0][0]
    return (1 / (1 + np.exp(-logits))).tolist()


@app.post("/predict")
async def predict(files: Annotated[UploadFile, File()]) -> dict:
    return {"probabilities": await asyncio.to_thread(infer, await files.read())}
