"""How fast the image pathway of a fresh model learns: a linear probe of the garment category on
``mvlt_nano``'s pooled image-only features (synthetic catalogue), raw [0, 1] pixels against the
model's default standardised pixels. The measurement behind ``MVLTConfig.pixel_mean``/``pixel_std``.

    python benchmarks/image_probe.py [--steps 150] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from mvlt.data import LabelMaps, PairDataset, bert_tokenizer, open_catalogue
from mvlt.model import create_model
from mvlt.model.config import RAW_PIXELS


def probe(pixels: str, steps: int, log_every: int, seed: int = 0) -> list[dict]:
    """Train encoder + linear head on the category from images alone; accuracy per logged step."""
    torch.manual_seed(seed)
    catalogue = open_catalogue("synthetic", split="train", num_products=3000, image_size=64, seed=seed)
    tokenizer, maps = bert_tokenizer(), LabelMaps.from_catalogue(catalogue)
    data = PairDataset(catalogue, tokenizer, label_maps=maps, image_size=64)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        data, batch_size=32, shuffle=True, collate_fn=data.collate, drop_last=True, generator=generator
    )
    overrides = RAW_PIXELS if pixels == "raw" else {}
    model = create_model("mvlt_nano", image_size=64, vocab_size=tokenizer.vocab_size, **overrides)
    head = torch.nn.Linear(model.config.embed_dims[-1], maps.num_categories)
    optimizer = torch.optim.AdamW([*model.parameters(), *head.parameters()], lr=1e-3)
    rows, step, start = [], 0, time.perf_counter()
    while step < steps:
        for batch in loader:
            features = model.forward_encoder(batch["images"], None).visual[-1].mean(dim=(2, 3))
            logits = head(features)
            loss = F.cross_entropy(logits, batch["category_labels"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            if step % log_every == 0:
                accuracy = (logits.argmax(-1) == batch["category_labels"]).float().mean().item()
                rows.append(
                    {"step": step, "loss": round(loss.item(), 3), "batch_accuracy": round(accuracy, 3)}
                )
                print(f"{pixels:>12}  step {step:4d}  loss {loss.item():.3f}  batch accuracy {accuracy:.2f}"
                      f"  ({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
            if step >= steps:
                break
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    result = {pixels: probe(pixels, args.steps, args.log_every) for pixels in ("raw", "standardised")}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
