"""The model-selection slice: H&M's train split only, 15 % of product codes (by SHA-1) renamed
"val", image paths made absolute; the test split is not written. Output: /tmp/hm-val/metadata.csv."""

import csv
import hashlib
from pathlib import Path

SOURCE = "/work/shared/data/hm_fashion_11k/metadata.csv"
with open(SOURCE, newline="", encoding="utf-8") as f:
    reader = csv.DictReader(f)
    rows, fields = list(reader), reader.fieldnames
out = []
for row in rows:
    if row["split"] != "train":
        continue
    row = {**row, "image": "/work/shared/data/hm_fashion_11k/" + row["image"]}
    row["split"] = "val" if int(hashlib.sha1(row["product_code"].encode()).hexdigest(), 16) % 100 < 15 else "train"
    out.append(row)
Path("/tmp/hm-val").mkdir(exist_ok=True)
with open("/tmp/hm-val/metadata.csv", "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(out)
