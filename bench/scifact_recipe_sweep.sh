#!/usr/bin/env bash
# Longer training of the recommended recipe, chosen on validation only (issue "beat BM25", item 4): Ray Tune
# (tune/sweep.py, ASHA on validation nDCG@10 after every epoch) over the learning rate of the Gaussian recipe at
# lambda_iso 0 (scale init, learnable scale, batch-scaled InfoNCE, tau 0.1, head rate 2e-4; the data and
# batch of bench/scifact_gaussian.sh), up to EPOCHS (4) epochs, trials one after another on 2 CPUs.
# Validation: the 93 held-out training queries ranked over their own documents plus DISTRACTORS (1,000)
# documents drawn from the SciFact corpus (seed 0), so the metric is not saturated; the test queries are not
# looked at until the choice is made. Then the best trial's best epoch (best_model.pt) is evaluated on the
# 300 test queries over the full corpus (L2 and cosine) and on MEDLINE, CACM and NPL (see evaluate_run).
# One setting outside the sweep, validated the same way (its best epoch on validation is evaluated):
# LR=… EPOCHS_CHOSEN=… SEED=… bash bench/scifact_recipe_sweep.sh retrain (the chosen setting at another seed);
# K=3 trains on groups of 3 mined negatives per query ($OUT/data_k3, prepared once with the same split),
# validated on the same file; TAU=… and HEAD_LR=… set τ (0.1) and the head's rate (2e-4) of RECIPE, each in the
# run's name when set (…_tau<τ>_head<rate>_s<seed>). MINI_BATCH=8 trains with GradCache chunks of 8 queries (the
# same loss and gradients, less activation memory: K=3's two workers otherwise come near this 24 GB machine's
# limit). PRECISION=no trains in float32 where auto would pick bf16 (to compare with float32 runs).
# The table, against the untrained model:  python bench/gaussian_table.py
# --results bench/results/recipe_sweep --baselines bench/results/gaussian --output bench/results/recipe_sweep_table.json --plot ""
EPOCHS=${EPOCHS:-4}
source "$(dirname "$0")/scifact_env.sh"
NAME=${NAME:-recipe_lr_e${EPOCHS}}
RESULTS=${RESULTS:-bench/results/recipe_sweep}
DISTRACTORS=${DISTRACTORS:-1000}
VAL_CORPUS="$OUT/data/val_distractors${DISTRACTORS}/corpus.jsonl"
RECIPE=(--batch_size 16 --num_workers 2 --head_learning_rate "${HEAD_LR:-2e-4}" --warmup_steps 6 --output_dim 0
        --head_init scale --learn_scale --distance_scale batch --temperature "${TAU:-0.1}" --lambda_isotropy 0
        --lambda_variance 0 --margin 0 --max_doc_length 256 --max_query_length 64 --log_every 5
        ${PRECISION:+--mixed_precision "$PRECISION"})
EVAL_FLAGS=(--test_data "$OUT/data/test_eval.json" --distance l2 cosine --hybrid --cache_dir "$OUT/cache")
mkdir -p "$RESULTS"
if [ ! -f "$VAL_CORPUS" ]; then
  mkdir -p "$(dirname "$VAL_CORPUS")"
  $PY - "$DISTRACTORS" "$VAL_CORPUS" <<'EOF'
import random, sys
lines = open("data/scifact/corpus.jsonl", encoding="utf-8").read().splitlines()
random.Random(0).shuffle(lines)
with open(sys.argv[2] + ".tmp", "w", encoding="utf-8") as f:
    f.write("\n".join(lines[: int(sys.argv[1])]) + "\n")
EOF
  mv "$VAL_CORPUS.tmp" "$VAL_CORPUS"
fi
# The run name of a retrained setting: recipe_[k<K>_]lr<rate>_e<epochs>[_tau<τ>][_head<rate>]_s<seed>.
recipe_run() {
  local k=$1 lr=$2 epochs=$3 name=recipe_
  [ "$k" != 1 ] && name+="k${k}_"
  name+="lr${lr}_e${epochs}"
  [ "${TAU:-0.1}" != 0.1 ] && name+="_tau${TAU}"
  [ "${HEAD_LR:-2e-4}" != 2e-4 ] && name+="_head${HEAD_LR}"
  echo "${name}_s${SEED}"
}
# Every chosen model lives at $OUT/<run>/best_model.pt, run = recipe_lr<rate>_e<epochs>_s<seed> (K=3: recipe_k3_…;
# the sweep's best: <name>_best_s<seed>),
# so its test result and its out-of-domain results ($RESULTS/<run>_<set>.json: MEDLINE, CACM, NPL test
# queries, the model trained on SciFact only; OOD=0 skips them) are named alike for bench/gaussian_table.py.
evaluate_run() {
  local run=$1 set
  if [ ! -f "$RESULTS/$run.json" ]; then
    $PY jobs/evaluate.py --model_path "$run=$OUT/$run/best_model.pt" "${EVAL_FLAGS[@]}" \
        --output_file "$RESULTS/$run.json"
  fi
  if [ "${OOD:-1}" = 1 ]; then
    for set in ${OOD_SETS:-medline cacm npl}; do
      if [ ! -f "$RESULTS/${run}_$set.json" ]; then
        $PY jobs/evaluate.py --model_path "$run=$OUT/$run/best_model.pt" --beir_dir "data/$set" \
            --distance l2 cosine --cache_dir "$OUT/cache" --output_file "$RESULTS/${run}_$set.json"
      fi
    done
  fi
}
# WiSE-FT (jobs/interpolate.py): each run in RUNS interpolated with its fitted start at ALPHA (0.5, the paper's
# default without an out-of-domain validation set; not tuned here), evaluated like the others:
# RUNS="recipe_lr8e-5_e4_s42 recipe_lr8e-5_e4_s7" bash bench/scifact_recipe_sweep.sh wise
if [ "${1:-sweep}" = wise ]; then
  : "${RUNS:?wise needs RUNS=<run names under $OUT>}"
  ALPHA=${ALPHA:-0.5}
  for RUN in $RUNS; do
    WISE="${RUN%_s*}_wise${ALPHA}_s${RUN##*_s}"
    if [ ! -f "$OUT/$WISE/best_model.pt" ]; then
      $PY jobs/interpolate.py --start "$OUT/$RUN/fitted_start_model.pt" --finetuned "$OUT/$RUN/best_model.pt" \
          --alpha "$ALPHA" --output "$OUT/$WISE/best_model.pt"
    fi
    evaluate_run "$WISE"
  done
  exit 0
fi
# Screening of one more setting of the recipe (item 4: tau, the head's own rate, a rate above the sweep's grid),
# chosen on validation:  PARAM=temperature VALUES=0.05,0.2 bash bench/scifact_recipe_sweep.sh screen
# Trials at rate LR (5e-5) with the EPOCHS (4) schedule, each stopped after TRIAL_EPOCHS (2) epochs (ASHA may stop
# one after epoch 1); $RESULTS/<name>.json puts their validation after each epoch beside that of the full run of
# the same schedule and seed (recipe_run's name at K 1, whose setting is RECIPE's).
if [ "${1:-sweep}" = screen ]; then
  : "${PARAM:?screen needs PARAM=<searchable parameter>}" "${VALUES:?screen needs VALUES=<a,b,...>}"
  LR=${LR:-5e-5}; TRIAL_EPOCHS=${TRIAL_EPOCHS:-2}
  SCREEN="screen_${PARAM}_lr${LR}_e${EPOCHS}to${TRIAL_EPOCHS}_s${SEED}"
  if [ ! -f "$OUT/sweeps/$SCREEN/trials.csv" ]; then
    SECONDS=0
    $PY tune/sweep.py --train_data "$OUT/data/train.json" --val_data "$OUT/data/val.json" \
        --val_corpus "$VAL_CORPUS" --output_dir "$OUT/sweeps" --name "$SCREEN" --epochs "$EPOCHS" \
        --trial_epochs "$TRIAL_EPOCHS" "${RECIPE[@]}" --seed "$SEED" --param "learning_rate=$LR" \
        --param "$PARAM=grid:$VALUES" --param lambda_isotropy=0 --param lambda_variance=0 --param margin=0 \
        --num_samples 1 --metric val_ndcg@10 --scheduler asha
    echo "screen $SCREEN: ${SECONDS}s" | tee -a "$OUT/timings.txt"
  fi
  $PY - "$OUT/sweeps/$SCREEN/trials.csv" "$OUT/$(recipe_run 1 "$LR" "$EPOCHS")" "$PARAM" \
      "$RESULTS/$SCREEN.json" "$RESULTS" "learning_rate=$LR" "temperature=${TAU:-0.1}" \
      "head_learning_rate=${HEAD_LR:-2e-4}" <<'PYEOF'
import json, sys
from pathlib import Path
import pandas as pd
trials, full_run, param, output, results, *recipe = sys.argv[1:]
rows = [{param: row[param], "val_ndcg@10_by_epoch": json.loads(row["val_ndcg@10_by_epoch"]),
         "stopped_early": bool(row["stopped_early"])} for _, row in pd.read_csv(trials).iterrows()]
if Path(f"{full_run}/metrics.json").is_file():
    config = json.load(open(f"{full_run}/train_config.json"))
    value = config["loss" if param in config["loss"] else "train"][param]
    by_epoch = [m["val_ndcg@10"] for m in json.load(open(f"{full_run}/metrics.json"))]
else:  # runs/ is not kept: the full run's validation as an earlier screen recorded it
    earlier = [json.load(open(f)) for f in sorted(Path(results).glob("screen_*.json"))]
    by_epoch = next(e["reference"]["val_ndcg@10_by_epoch"] for e in earlier if e["reference"]["run"] == full_run)
    value = float(dict(setting.split("=") for setting in recipe)[param])
reference = {param: value, "run": full_run, "val_ndcg@10_by_epoch": by_epoch}
with open(output + ".tmp", "w") as f:
    json.dump({"parameter": param, "trials": rows, "reference": reference}, f, indent=1)
print(json.dumps({"trials": rows, "reference": reference}, indent=1))
PYEOF
  mv "$RESULTS/$SCREEN.json.tmp" "$RESULTS/$SCREEN.json"
  exit 0
fi
if [ "${1:-sweep}" = retrain ]; then
  : "${LR:?retrain needs LR=<learning rate>}" "${EPOCHS_CHOSEN:?retrain needs EPOCHS_CHOSEN=<epochs>}"
  K=${K:-1}
  TRAIN_DIR="$OUT/data"; RUN=$(recipe_run "$K" "$LR" "$EPOCHS_CHOSEN")
  if [ "$K" != 1 ]; then TRAIN_DIR="$OUT/data_k$K"; fi
  if [ ! -f "$TRAIN_DIR/train.json" ]; then
    $PY jobs/prepare_data.py --beir_dir data/scifact --beir_split train --split 0.9 0.1 0 \
        --beir_eval_split test --mine_negatives --num_negatives "$K" --cache_dir "$OUT/cache" --output_dir "$TRAIN_DIR"
  fi
  if [ ! -f "$OUT/$RUN/final_model.pt" ]; then
    SECONDS=0
    $PY jobs/train.py --train_data "$TRAIN_DIR/train.json" --val_data "$OUT/data/val.json" \
        --val_corpus "$VAL_CORPUS" --output_dir "$OUT/$RUN" --epochs "$EPOCHS_CHOSEN" --learning_rate "$LR" \
        "${RECIPE[@]}" --seed "$SEED" ${MINI_BATCH:+--mini_batch_size "$MINI_BATCH"}
    echo "train $RUN: ${SECONDS}s" | tee -a "$OUT/timings.txt"
  fi
  evaluate_run "$RUN"
  exit 0
fi
if [ ! -f "$OUT/sweeps/$NAME/best_model.pt" ]; then
  SECONDS=0
  $PY tune/sweep.py --train_data "$OUT/data/train.json" --val_data "$OUT/data/val.json" \
      --val_corpus "$VAL_CORPUS" --output_dir "$OUT/sweeps" --name "$NAME" --epochs "$EPOCHS" "${RECIPE[@]}" \
      --seed "$SEED" --param learning_rate=grid:${LRS:-2e-5,3e-5,5e-5} --param lambda_isotropy=0 \
      --param lambda_variance=0 --param margin=0 --num_samples 1 --metric val_ndcg@10 --scheduler asha
  echo "sweep $NAME: ${SECONDS}s" | tee -a "$OUT/timings.txt"
  cp "$OUT/sweeps/$NAME/trials.csv" "$RESULTS/${NAME}_trials.csv"
  cp "$OUT/sweeps/$NAME/best_config.json" "$RESULTS/${NAME}_best_config.json"
fi
# The best trial's best epoch as a run of its own, named after the sweep (its rate is in best_config.json).
BEST="${NAME}_best_s${SEED}"
if [ ! -f "$OUT/$BEST/best_model.pt" ]; then
  mkdir -p "$OUT/$BEST"
  cp "$OUT/sweeps/$NAME/best_model.pt" "$OUT/$BEST/best_model.pt.tmp"
  mv "$OUT/$BEST/best_model.pt.tmp" "$OUT/$BEST/best_model.pt"
fi
evaluate_run "$BEST"
