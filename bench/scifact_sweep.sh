#!/usr/bin/env bash
# SciFact sweep (issue 3): Ray Tune over lambda_isotropy with ASHA, packaged MiniLM, on SciFact train/val
# (prepared as in bench/scifact_train.sh), then the best trial's and the default config's checkpoints
# evaluated on the 300 test queries over the full corpus. Trials run one after another on 2 CPUs.
# TRAIN=…/train_subset416.json trades half the training data for half the time (what the note reports).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/scifact}
TRAIN=${TRAIN:-$OUT/data/train.json}
EPOCHS=${EPOCHS:-2}
NAME=${NAME:-scifact_sweep}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
if [ ! -f "$OUT/data/train.json" ]; then
  $PY jobs/prepare_data.py --beir_dir data/scifact --beir_split train --split 0.9 0.1 0 \
      --beir_eval_split test --mine_negatives --output_dir "$OUT/data"
fi
SECONDS=0
# lambda_isotropy 0.05 with lambda_variance 0.1 and margin 0 is jobs/train.py's default configuration.
$PY tune/sweep.py --train_data "$TRAIN" --val_data "$OUT/data/val.json" --output_dir "$OUT/sweeps" \
    --name "$NAME" --epochs "$EPOCHS" --batch_size 16 --num_workers 2 --learning_rate 2e-5 --warmup_steps 3 \
    --output_dim 0 --temperature 1.0 --max_doc_length 256 --max_query_length 64 --log_every 5 \
    --param lambda_isotropy=grid:0,0.05,0.2 --param lambda_variance=0.1 --param margin=0 \
    --num_samples 1 --metric val_ndcg@10 --scheduler asha
echo "sweep $NAME: ${SECONDS}s" | tee -a "$OUT/timings.txt"
$PY jobs/evaluate.py --model_path "$OUT/sweeps/$NAME/best_model.pt" --test_data "$OUT/data/test_eval.json" \
    --distance l2 --output_file "$OUT/results/${NAME}_best.json"
DEFAULT_CKPT=$($PY -c "import pandas as pd, sys; t = pd.read_csv(sys.argv[1]); \
print(t.loc[t.lambda_isotropy == 0.05, 'best_checkpoint'].item() + '/checkpoint.pt')" "$OUT/sweeps/$NAME/trials.csv")
$PY jobs/evaluate.py --model_path "$DEFAULT_CKPT" --test_data "$OUT/data/test_eval.json" \
    --distance l2 --output_file "$OUT/results/${NAME}_default.json"
