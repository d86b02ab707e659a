#!/usr/bin/env bash
# The Gaussian recipe on SciFact (issue "The Gaussian, for real"): the data and budget of
# bench/scifact_train.sh (2 epochs, global batch 32, lr 2e-5, identity-width head at 384, mined negatives),
# with a fitted head (HEAD_INIT: whiten by default, or scale / standardize), a learnable scale and the
# batch-scaled InfoNCE (TAU), at several lambda_iso.
# Each run's evaluation (300 test queries, full corpus; ranked by L2 and by cosine; isotropy of the corpus
# embeddings; nDCG@10 at fixed-range int8, sign bits with and without rescoring and IVF-PQ 32x; for
# lambda_iso 0 also centred + randomly rotated, the free baseline; per-query nDCG@10 for paired tests) is
# written to bench/results/gaussian/<name>.json as soon as it finishes; finished runs are skipped, so the
# grid can be built over several sittings:  VARIANTS="iso1 iso0" SEED=7 bash bench/scifact_gaussian.sh
# bench/gaussian_table.py turns the JSON into the table (means over seeds, sign-flip p-values, a plot).
source "$(dirname "$0")/scifact_env.sh"
TAU=${TAU:-0.05}
HEAD_INIT=${HEAD_INIT:-whiten}
# Run names of the first grid (whiten) carry no init; the others name theirs.
INIT_TAG=""; if [ "$HEAD_INIT" != whiten ]; then INIT_TAG="_${HEAD_INIT}"; fi
RESULTS=${RESULTS:-bench/results/gaussian}
mkdir -p "$RESULTS"
EVAL_FLAGS=(--distance l2 cosine --compress int8 binary binary-hamming ivfpq32 --cache_dir "$OUT/cache")
rotate_if_baseline() { if [ "$1" = 0 ]; then echo --rotate; fi; }
for VARIANT in ${VARIANTS:-iso1 iso0 iso0.1}; do
  LAMBDA=${VARIANT#iso}
  NAME="gauss${INIT_TAG}_${VARIANT}_tau${TAU}_e${EPOCHS}_s${SEED}"
  if [ ! -f "$OUT/$NAME/final_model.pt" ]; then
    SECONDS=0
    $PY jobs/train.py --train_data "$OUT/data/train.json" --val_data "$OUT/data/val.json" \
        --output_dir "$OUT/$NAME" --epochs "$EPOCHS" --batch_size 16 --num_workers 2 --learning_rate 2e-5 \
        --head_learning_rate 2e-4 --warmup_steps 6 --output_dim 0 --head_init "$HEAD_INIT" --learn_scale \
        --distance_scale batch --temperature "$TAU" --lambda_isotropy "$LAMBDA" --lambda_variance 0.0 \
        --margin 0 --max_doc_length 256 --max_query_length 64 --log_every 5 --seed "$SEED"
    echo "train $NAME: ${SECONDS}s" | tee -a "$OUT/timings.txt"
  fi
  if [ ! -f "$RESULTS/$NAME.json" ]; then
    SECONDS=0
    $PY jobs/evaluate.py --model_path "$NAME=$OUT/$NAME/final_model.pt" --test_data "$OUT/data/test_eval.json" \
        "${EVAL_FLAGS[@]}" $(rotate_if_baseline "$LAMBDA") --output_file "$RESULTS/$NAME.json"
    echo "evaluate $NAME: ${SECONDS}s" | tee -a "$OUT/timings.txt"
  fi
done
# The untrained model (L2 and cosine) and BM25 on the same queries, once.
if [ ! -f "$RESULTS/baselines_scifact.json" ]; then
  $PY jobs/evaluate.py --base_model sentence-transformers/all-MiniLM-L6-v2 --test_data "$OUT/data/test_eval.json" \
      --baselines bm25 "${EVAL_FLAGS[@]}" --output_file "$RESULTS/baselines_scifact.json"
fi
# Out of domain: every finished model (and, once, BM25 and the base model) on MEDLINE, CACM and NPL test
# queries; skipped where the JSON exists. OOD=0 turns it off; OOD_SETS="medline cacm" picks the collections.
if [ "${OOD:-1}" = 1 ]; then
  for SET in ${OOD_SETS:-medline cacm npl}; do
    if [ ! -f "$RESULTS/baselines_${SET}.json" ]; then
      $PY jobs/evaluate.py --base_model sentence-transformers/all-MiniLM-L6-v2 --beir_dir "data/$SET" \
          --baselines bm25 "${EVAL_FLAGS[@]}" --output_file "$RESULTS/baselines_${SET}.json"
    fi
    for VARIANT in ${VARIANTS:-iso1 iso0 iso0.1}; do
      NAME="gauss${INIT_TAG}_${VARIANT}_tau${TAU}_e${EPOCHS}_s${SEED}"
      if [ -f "$OUT/$NAME/final_model.pt" ] && [ ! -f "$RESULTS/${NAME}_${SET}.json" ]; then
        $PY jobs/evaluate.py --model_path "$NAME=$OUT/$NAME/final_model.pt" --beir_dir "data/$SET" \
            "${EVAL_FLAGS[@]}" $(rotate_if_baseline "${VARIANT#iso}") --output_file "$RESULTS/${NAME}_${SET}.json"
      fi
    done
  done
fi
