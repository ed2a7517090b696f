#!/usr/bin/env bash
# The design probes of docs/DESIGN.md ("Matching that learns from scratch"): mvlt_nano, synthetic
# catalogue (3,000 products, 64 px), batch 64, lr 1e-3, 500 steps, fp32, 2 threads, seed 0; each
# scored by eval_synthetic.py on 200 queries. Usage: bash experiments/recipe/probes.sh [OUT]
set -euo pipefail
out=${1:-runs/probes}
here=$(dirname "$0")
probe() {  # probe NAME OBJECTIVES [extra flags...]
    local name=$1 objectives=$2; shift 2
    mvlt pretrain --model mvlt_nano --data synthetic --set data_options.num_products=3000 --image-size 64 \
        --batch-size 64 --steps 500 --lr 1e-3 --tokenizer train --threads 2 --precision fp32 --no-progress \
        --objectives "$objectives" --out "$out/$name" --overwrite "$@"
    python "$here/eval_synthetic.py" "$out/$name" 200
}
paper_fusion="--set model_overrides.fusion_stage=1"
paper_mlm="--set model_overrides.mlm_trains_embeddings=true"
paper_mir="--set model_overrides.mir_trains_early_stages=true"
probe itc-itm-fusion1 itc,itm --loss-weights itm=1 $paper_fusion                      # joint from stage 1 (the paper's stream)
probe itc-itm itc,itm --loss-weights itm=1                         # joint at stage 4 only (ours)
probe all-paper-grads itc,itm,mlm,mir --loss-weights itm=1,mlm=0.1,mir=0.1 $paper_mlm $paper_mir
probe mlm-isolated itc,itm,mlm --loss-weights itm=1,mlm=0.1
probe mir-early-grads itc,itm,mir --loss-weights itm=1,mir=0.1 $paper_mir
probe mir-early-grads-0.01 itc,itm,mlm,mir --loss-weights itm=1,mlm=0.1,mir=0.01 $paper_mir
probe all-isolated-itm1 itc,itm,mlm,mir --loss-weights itm=1
probe all-isolated itc,itm,mlm,mir                                 # the default recipe (ITM weight 3)
