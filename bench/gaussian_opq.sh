#!/usr/bin/env bash
# The free baseline of product quantisation: each finished model of bench/scifact_gaussian.sh searched through
# IVF-PQ at 32x with and without OPQ (a rotation learned to balance the PQ subspaces), on SciFact test and on
# MEDLINE, CACM and NPL. The corpus embeddings come from the embedding cache the Gaussian grid filled, so only
# the PQ indexes are trained here. One JSON per model and collection in bench/results/gaussian_opq/ (skipped
# when it exists):  VARIANTS="iso0" SEEDS="42 7" bash bench/gaussian_opq.sh
source "$(dirname "$0")/scifact_env.sh"
RESULTS=${RESULTS:-bench/results/gaussian_opq}
mkdir -p "$RESULTS"
for SEED in ${SEEDS:-42 7}; do
  for VARIANT in ${VARIANTS:-iso0 iso0.1 iso1}; do
    NAME="gauss_scale_${VARIANT}_tau0.1_e${EPOCHS}_s${SEED}"
    MODEL="$OUT/$NAME/final_model.pt"
    if [ ! -f "$MODEL" ]; then echo "skip $NAME: not trained"; continue; fi
    for SET in scifact medline cacm npl; do
      if [ "$SET" = scifact ]; then DATA=(--test_data "$OUT/data/test_eval.json"); FILE="$RESULTS/$NAME.json"
      else DATA=(--beir_dir "data/$SET"); FILE="$RESULTS/${NAME}_${SET}.json"; fi
      if [ ! -f "$FILE" ]; then
        $PY jobs/evaluate.py --model_path "$NAME=$MODEL" "${DATA[@]}" --distance l2 \
            --compress ivfpq32 opq-ivfpq32 --cache_dir "$OUT/cache" --output_file "$FILE"
      fi
    done
  done
done
