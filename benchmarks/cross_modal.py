"""Does a checkpoint's text stream see the image? A diagnostic for ITM that stays at chance.

    python benchmarks/cross_modal.py CHECKPOINT [--data synthetic|MANIFEST] [--items 256] [--json FILE]

For each stage it reports, over a batch of real image/text pairs, how much of the attention keys
and values varies from sample to sample (between-sample variance / mean square): for the
spatially reduced visual keys/values, which are all a text token can read of the image, and for the
text keys. Near-zero visual fractions mean the image reaches the text tokens (and so [CLS], ITM and
retrieval) as a constant. It also reports the ITM loss on matched vs shuffled pairs, i.e. whether
the model separates them at all. Used for the "known limitation" in docs/DESIGN.md and RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import mvlt
from common import write_json
from mvlt.data import PairDataset, open_catalogue


def variance_fraction(x: torch.Tensor) -> float:
    """Between-sample variance over mean square, averaged over positions (``B x N x C``)."""
    return float((x.var(0).sum(-1) / (x**2).mean(0).sum(-1).clamp_min(1e-12)).mean())


@torch.no_grad()
def stage_report(model: mvlt.MVLT, batch: dict) -> list[dict]:
    rows = []
    visual, text = batch["images"], model.text_embed(batch["input_ids"])
    mask = batch["attention_mask"]
    for k, stage in enumerate(model.stages):
        x, hw = stage.embed(visual, text)
        key_mask = stage.key_mask(mask, hw, x.shape[0], x.device)
        for j, block in enumerate(stage.blocks):
            source = block.attn.reduce(block.norm1(x), hw)
            keys, values = block.attn.kv(source).chunk(2, dim=-1)
            nv = source.shape[1] - text.shape[1]
            visual_part, text_part = slice(0, nv), slice(nv + 1, None)  # text: all but [CLS]
            rows.append({
                "stage": k + 1, "block": j,
                "visual_keys": variance_fraction(keys[:, visual_part]),
                "visual_values": variance_fraction(values[:, visual_part]),
                "text_keys": variance_fraction(keys[:, text_part]),
                "text_values": variance_fraction(values[:, text_part]),
            })  # fmt: skip
            x = block(x, hw, key_mask)
        n = hw[0] * hw[1]
        visual = x[:, :n].transpose(1, 2).reshape(x.shape[0], -1, *hw)
        text = x[:, n:]
    return rows


@torch.no_grad()
def itm_losses(model: mvlt.MVLT, batch: dict) -> dict[str, float]:
    n = len(batch["images"])
    shuffled = torch.roll(torch.arange(n), 1)
    match = model.itm_logits(
        model.forward_encoder(batch["images"], batch["input_ids"], batch["attention_mask"])
    )
    other = model.itm_logits(
        model.forward_encoder(
            batch["images"], batch["input_ids"][shuffled], batch["attention_mask"][shuffled]
        )
    )
    return {
        "itm_loss_matched": float(F.cross_entropy(match, torch.ones(n, dtype=torch.long))),
        "itm_loss_shuffled": float(F.cross_entropy(other, torch.zeros(n, dtype=torch.long))),
        "match_prob_matched": float(match.softmax(-1)[:, 1].mean()),
        "match_prob_shuffled": float(other.softmax(-1)[:, 1].mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--split", default="test")
    parser.add_argument("--items", type=int, default=128)
    parser.add_argument("--compare-init", action="store_true", help="also report a freshly initialised model")
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = mvlt.MVLT.from_pretrained(args.checkpoint).eval()
    options = {}
    if args.data == "synthetic":
        options = {"image_size": model.config.image_size}
        plan = args.checkpoint.parent / "demo.json"
        if plan.is_file():  # a demo's synthetic catalogue: the same products
            import json

            options = json.loads(plan.read_text())["data_options"]
    catalogue = open_catalogue(args.data, split=args.split, **options)
    dataset = PairDataset(catalogue, model.tokenizer, image_size=model.config.image_size)
    batch = dataset.collate([dataset[i] for i in range(min(args.items, len(dataset)))])
    report = {"checkpoint": str(args.checkpoint)}
    models = {"checkpoint": model}
    if args.compare_init:  # the same architecture, freshly initialised
        models["initialisation"] = mvlt.MVLT(model.config).eval()
    for name, candidate in models.items():
        rows = stage_report(candidate, batch)
        print(f"{name}: between-sample variance fraction of the attention keys (K) and values (V)")
        print("  stage block  visual K  visual V   text K   text V")
        for r in rows:
            print(
                f"  {r['stage']:5} {r['block']:5}  {r['visual_keys']:8.4f}  {r['visual_values']:8.4f}  "
                f"{r['text_keys']:7.4f}  {r['text_values']:7.4f}"
            )
        itm = itm_losses(candidate, batch)
        print("  " + ", ".join(f"{k} {v:.4f}" for k, v in itm.items()))
        report[name] = {"stages": rows, **itm}
    write_json(args.json, report)


if __name__ == "__main__":
    main()
