# Sourced by the SciFact bench scripts: strict mode, the repository root, the shared defaults, and the SciFact
# data (prepared once: training queries with one mined hard negative, the test split as test_eval.json).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/scifact}
EPOCHS=${EPOCHS:-2}
SEED=${SEED:-42}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
if [ ! -f "$OUT/data/train.json" ]; then
  $PY jobs/prepare_data.py --beir_dir data/scifact --beir_split train --split 0.9 0.1 0 \
      --beir_eval_split test --mine_negatives --cache_dir "$OUT/cache" --output_dir "$OUT/data"
fi
