#!/usr/bin/env bash
# SciFact quality benchmark (issue 6): base MiniLM vs trained with and without SIGReg, on the 300 test
# queries over the full corpus. Prepares the data once (mined hard negatives), then trains and evaluates
# each variant; figures land in $OUT/results/*.json. About 40 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/scifact}
EPOCHS=${EPOCHS:-2}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
if [ ! -f "$OUT/data/train.json" ]; then
  $PY jobs/prepare_data.py --beir_dir data/scifact --beir_split train --split 0.9 0.1 0 \
      --beir_eval_split test --mine_negatives --output_dir "$OUT/data"
fi
for LAMBDA in ${LAMBDAS:-0 0.05}; do
  NAME="minilm_iso${LAMBDA}_e${EPOCHS}"
  SECONDS=0
  $PY jobs/train.py --train_data "$OUT/data/train.json" --val_data "$OUT/data/val.json" \
      --output_dir "$OUT/$NAME" --epochs "$EPOCHS" --batch_size 16 --num_workers 2 --learning_rate 2e-5 \
      --warmup_steps 6 --output_dim 0 --lambda_isotropy "$LAMBDA" --lambda_reg 0.0 --temperature 1.0 \
      --margin 0 --max_doc_length 256 --max_query_length 64 --log_every 5
  echo "train $NAME: ${SECONDS}s" | tee -a "$OUT/timings.txt"
  SECONDS=0
  $PY jobs/evaluate.py --model_path "$OUT/$NAME/final_model.pt" --test_data "$OUT/data/test_eval.json" \
      --distance l2 --output_file "$OUT/results/$NAME.json"
  echo "evaluate $NAME: ${SECONDS}s" | tee -a "$OUT/timings.txt"
done
