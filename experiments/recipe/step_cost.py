"""Seconds per training step of each objective set, fused from stage 1 (the paper) or at the last
stage (the default): ``mvlt_nano``, 64 px, batch 64, fp32, 2 threads, forward + backward on one
synthetic batch, best of 3 after a warm-up. Run it alone: it times the machine.

    python experiments/recipe/step_cost.py
"""

from __future__ import annotations

import time

import torch

from mvlt.data import PretrainDataset, bert_tokenizer, open_catalogue
from mvlt.model import LossWeights, create_model

OBJECTIVES = {
    "itc": LossWeights(itc=1, mir=0, itm=0, mlm=0),
    "itc+itm": LossWeights(itc=1, mir=0, itm=1, mlm=0),
    "mlm+mir": LossWeights(itc=0, mir=1, itm=0, mlm=1),
    "all": LossWeights(itc=1, mir=1, itm=1, mlm=1),
}


def main() -> None:
    torch.set_num_threads(2)
    tokenizer = bert_tokenizer()
    catalogue = open_catalogue("synthetic", split="train", num_products=3000, image_size=64, seed=0)
    dataset = PretrainDataset(catalogue, tokenizer, image_size=64, itm=False)
    batch = dataset.collate([dataset[i] for i in range(64)])
    for fusion in (1, 4):
        torch.manual_seed(0)
        model = create_model("mvlt_nano", image_size=64, vocab_size=tokenizer.vocab_size, fusion_stage=fusion)
        for name, weights in OBJECTIVES.items():
            times = []
            for _ in range(4):
                start = time.perf_counter()
                model.zero_grad()
                model.forward_loss(batch, weights, itm_negatives="itc")["total"].backward()
                times.append(time.perf_counter() - start)
            print(f"fusion_stage {fusion}  {name:8} {min(times[1:]):.3f} s/step")


if __name__ == "__main__":
    main()
