#!/usr/bin/env bash
# Retrieval at a fixed byte budget on SciFact test (issue "The Gaussian, for real", part 2): each model as it
# is and centred + randomly rotated (--rotate, the free baseline), through fixed-range int8 (1 byte/dim),
# sign bits with and without rescoring (1 bit/dim), IVF-PQ at 32x and calibrated SQ8, relative to exact
# float32 search. MODELS: NAME=CHECKPOINT pairs (default: the untrained MiniLM, L2 on its raw embeddings).
# Writes bench/results/quantization_<first name>.json. Corpus embeddings come from the embedding cache.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/scifact}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
COMPRESS=(int8 binary binary-hamming ivfpq32 sq8)
if [ -n "${MODELS:-}" ]; then
  read -r -a PAIRS <<< "$MODELS"
  FIRST=${PAIRS[0]%%=*}
  $PY jobs/evaluate.py --model_path "${PAIRS[@]}" --test_data "$OUT/data/test_eval.json" --distance l2 --rotate \
      --compress "${COMPRESS[@]}" --cache_dir "$OUT/cache" --output_file "bench/results/quantization_${FIRST}.json"
else
  $PY jobs/evaluate.py --base_model sentence-transformers/all-MiniLM-L6-v2 --test_data "$OUT/data/test_eval.json" \
      --distance l2 --rotate --compress "${COMPRESS[@]}" --cache_dir "$OUT/cache" \
      --output_file bench/results/quantization_base.json
fi
