"""The control of this run: its fine-tuned step checkpoint (trained heads, before the fit), the
heads fitted to the labels alone, saved as a model folder to score with `mvlt evaluate`.

    python docs/results/pretrained/micro-fitheads-teacher-cpu/labels_only_fit.py RUN OUT
    mvlt evaluate --checkpoint OUT --data ../shared/data/hm_fashion_11k/metadata.csv \
        --task recognition --image-cache RUN/image-cache --out OUT-eval

RUN is the benchmark's --out folder (here /work/tta/final4, fine-tuned for 753 steps).
"""

import sys
from pathlib import Path

import torch

import mvlt
from mvlt.data import open_catalogue
from mvlt.data.image_cache import open_image_cache
from mvlt.train.head_fit import fit_recognition_heads

torch.set_num_threads(2)
run, out = Path(sys.argv[1]), Path(sys.argv[2])
checkpoint = sorted((run / "finetune" / "checkpoints").glob("step-*"))[-1]
model = mvlt.MVLT.from_pretrained(checkpoint)
catalogue = open_catalogue("../shared/data/hm_fashion_11k/metadata.csv", split="train")
size = model.config.image_size
cache = open_image_cache(catalogue, size, "pad", run / "image-cache")
print(fit_recognition_heads(model, catalogue, size, image_cache=cache))
model.save_pretrained(out)
