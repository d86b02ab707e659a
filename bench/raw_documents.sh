#!/usr/bin/env bash
# The raw-documents path measured on real queries: a collection's corpus is the user's raw documents
# (prepare_data --documents … --generate_pairs), the demo's training recipe (1 epoch) trains on the synthetic
# pairs, and the model is evaluated on the collection's real test queries — which training never sees — next
# to the untrained model and BM25 (bench/results/gaussian/baselines_<set>.json, same queries).
# Each run's evaluation goes to bench/results/raw_documents/<name>.json as soon as it finishes; finished runs
# are skipped:  SETS="medline cacm" METHODS="ict crop" NUM_PAIRS=1000 bash bench/raw_documents.sh
# TRAIN_EXTRA adds training flags (the last of a repeated flag wins) under a TAG in the run's name:
#   TRAIN_EXTRA="--learning_rate 5e-6" TAG=lr5e-6 SETS=cacm METHODS=crop bash bench/raw_documents.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/raw_documents}
RESULTS=${RESULTS:-bench/results/raw_documents}
SEED=${SEED:-42}
NUM_PAIRS=${NUM_PAIRS:-1000}
PAIRS_PER_DOCUMENT=${PAIRS_PER_DOCUMENT:-2}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
mkdir -p "$RESULTS"
for SET in ${SETS:-medline cacm npl}; do
  for METHOD in ${METHODS:-ict crop}; do
    NAME="raw_${SET}_${METHOD}_n${NUM_PAIRS}${TAG:+_$TAG}_s${SEED}"
    RUN="$OUT/$NAME"
    DATA="$OUT/raw_${SET}_${METHOD}_n${NUM_PAIRS}_s${SEED}/data"  # shared by every TAG
    if [ -f "$RESULTS/$NAME.json" ]; then continue; fi
    if [ ! -f "$DATA/train.json" ]; then
      # A method that yields no pair on this collection (ICT without sentence ends) is reported, not fatal.
      if ! $PY jobs/prepare_data.py --documents "data/$SET/corpus.jsonl" --generate_pairs --pair_method "$METHOD" \
          --pairs_per_document "$PAIRS_PER_DOCUMENT" --num_pairs "$NUM_PAIRS" --split 0.9 0.1 0 --seed "$SEED" \
          --output_dir "$DATA"; then
        echo "prepare $NAME failed: no training data" | tee -a "$OUT/timings.txt"
        continue
      fi
    fi
    if [ ! -f "$RUN/model/final_model.pt" ]; then
      SECONDS=0
      $PY jobs/train.py --train_data "$DATA/train.json" --val_data "$DATA/val.json" \
          --output_dir "$RUN/model" --epochs 1 --batch_size 16 --num_workers 2 --learning_rate 2e-5 \
          --head_learning_rate 2e-4 --warmup_steps 6 --output_dim 0 --head_init scale --learn_scale \
          --distance_scale batch --temperature 0.1 --lambda_isotropy 0 --lambda_variance 0 --margin 0 \
          --max_doc_length 256 --max_query_length 64 --log_every 5 --seed "$SEED" ${TRAIN_EXTRA:-}
      echo "train $NAME: ${SECONDS}s" | tee -a "$OUT/timings.txt"
    fi
    $PY jobs/evaluate.py --model_path "$NAME=$RUN/model/final_model.pt" --beir_dir "data/$SET" \
        --distance l2 cosine --output_file "$RESULTS/$NAME.json"
  done
done
