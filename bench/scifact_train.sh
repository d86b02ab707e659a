#!/usr/bin/env bash
# SciFact science table (issue 5): does SIGReg help retrieval? Trains MiniLM on SciFact's training queries
# (mined hard negatives) once per lambda_isotropy, every other setting fixed, then evaluates all of them
# side by side with the base model and its whitened version as baselines, on the 300 test queries over the
# full corpus: nDCG@10 / Recall@10 / MRR@10, isotropy of the corpus embeddings, and nDCG@10 over SQ8 and
# IVF-PQ (16x) indexes relative to exact search. Figures: bench/results/scifact_science.json and the report
# in $OUT/report. About 15 min of training per lambda and 4 min of encoding per model on 2 CPU cores;
# trained checkpoints that already exist are reused.
# Another seed: SEED=7 bash bench/scifact_train.sh (writes scifact_science_seed7.json, no baselines: they do
# not depend on the seed), then bench/science_seeds.py over the per-seed files for means and paired changes.
source "$(dirname "$0")/scifact_env.sh"
SUFFIX=""
BASELINES=(--baselines base whitening)
if [ "$SEED" != 42 ]; then SUFFIX="_seed${SEED}"; BASELINES=(); fi
MODELS=()
for LAMBDA in ${LAMBDAS:-0 0.01 0.05 0.2}; do
  NAME="minilm_iso${LAMBDA}_e${EPOCHS}${SUFFIX}"
  if [ ! -f "$OUT/$NAME/final_model.pt" ]; then
    SECONDS=0
    $PY jobs/train.py --train_data "$OUT/data/train.json" --val_data "$OUT/data/val.json" \
        --output_dir "$OUT/$NAME" --epochs "$EPOCHS" --batch_size 16 --num_workers 2 --learning_rate 2e-5 \
        --warmup_steps 6 --output_dim 0 --lambda_isotropy "$LAMBDA" --lambda_variance 0.0 --temperature 1.0 \
        --margin 0 --max_doc_length 256 --max_query_length 64 --log_every 5 --seed "$SEED"
    echo "train $NAME: ${SECONDS}s" | tee -a "$OUT/timings.txt"
  fi
  MODELS+=("iso${LAMBDA}=$OUT/$NAME/final_model.pt")
done
SECONDS=0
$PY jobs/evaluate.py --model_path "${MODELS[@]}" --test_data "$OUT/data/test_eval.json" --distance l2 \
    "${BASELINES[@]}" --compress sq8 ivfpq --cache_dir "$OUT/cache" \
    --output_file "${RESULT:-bench/results/scifact_science${SUFFIX}.json}" --report "$OUT/report${SUFFIX}"
echo "evaluate ${#MODELS[@]} models (seed $SEED) ${BASELINES[*]}: ${SECONDS}s" | tee -a "$OUT/timings.txt"
