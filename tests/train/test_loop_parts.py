"""The loop's parts without Ray: per-step schedule, accumulation equivalence, checkpoint round trip."""

from __future__ import annotations

import math

import pytest
import torch

from ragcun.config import LossConfig, ModelConfig, TrainConfig, TrainJobConfig
from ragcun.losses import GaussianEmbeddingLoss
from ragcun.model import GaussianEmbeddingModel, load_checkpoint_payload
from ragcun.train import loop
from ragcun.train.loop import StepRunner, build_optimizer, encode_batch, resolve_precision
from ragcun.train.schedule import get_lr, lr_multiplier

from ..conftest import SAMPLE_DOCS


def test_schedule_values():
    assert get_lr(0, 1.0, 4, 20) == pytest.approx(0.25)
    assert get_lr(3, 1.0, 4, 20) == pytest.approx(1.0)
    assert get_lr(4, 1.0, 4, 20) == pytest.approx(1.0)  # cosine starts at the peak
    assert get_lr(12, 1.0, 4, 20) == pytest.approx(0.5)  # half way through the decay
    assert get_lr(20, 1.0, 4, 20, min_ratio=0.1) == pytest.approx(0.1)
    assert get_lr(10, 2.0, 0, 10) == pytest.approx(0.0, abs=1e-12)


def test_scheduler_moves_every_optimizer_step():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier(2, 10))
    seen = []
    for _ in range(10):
        seen.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1 * get_lr(s, 1.0, 2, 10) for s in range(10)])
    assert len(set(round(v, 9) for v in seen)) >= 8  # not constant within an "epoch"


def _batch(model, rows):
    batch = {}
    for role, kind in (("query", "query"), ("positive", "document"), ("negative", "document")):
        texts = [r[role] for r in rows]
        tokens = model.tokenizer([(model.query_prompt if kind == "query" else "") + t for t in texts],
                                 padding="max_length", truncation=True, max_length=32, return_tensors="pt")
        batch[f"{role}_input_ids"] = tokens["input_ids"]
        batch[f"{role}_attention_mask"] = tokens["attention_mask"]
    return batch


ROWS = [{"query": f"what about {w}", "positive": d, "negative": SAMPLE_DOCS[(i + 2) % 6]}
        for i, (w, d) in enumerate(zip(["python", "cats", "vaccine", "cancer", "neural", "heart"], SAMPLE_DOCS))]


def _runner(model, accumulation):
    job = TrainJobConfig(model=model.config, train=TrainConfig(learning_rate=1e-3, warmup_steps=0))
    opt = build_optimizer(model, job)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier(0, 10))
    # A loss that is a mean over triplets, so accumulation must equal the big batch exactly.
    loss = GaussianEmbeddingLoss(LossConfig(loss="triplet", margin=5.0, lambda_isotropy=0.0, lambda_variance=0.0))
    return StepRunner(model, loss, opt, sched, accumulation_steps=accumulation, grad_clip=0.0)


def _cached_pair(tiny_bert_dir, mini_batch_size, train: bool):
    torch.manual_seed(0)
    models = [GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=8)).train(train)
              for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    config = LossConfig(temperature=0.1, distance_scale="batch", lambda_isotropy=0.5, lambda_variance=0.3,
                        num_slices=16)
    runners = []
    for model, mini in zip(models, (None, mini_batch_size)):
        job = TrainJobConfig(model=model.config, train=TrainConfig(learning_rate=1e-3, warmup_steps=0))
        opt = build_optimizer(model, job)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_multiplier(0, 10))
        runners.append(StepRunner(model, GaussianEmbeddingLoss(config, distributed=False), opt, sched,
                                  grad_clip=0.0, mini_batch_size=mini))
    batch = _batch(models[0], ROWS)
    batch["query_id"] = torch.tensor([0, 0, 1, 2, 3, 4])  # rows 0 and 1 share a query: masked for each other
    return models, runners, batch


def _assert_same(parts_a, parts_b, model_a, model_b):
    assert parts_a.keys() == parts_b.keys()
    for key in parts_a:
        assert parts_b[key] == pytest.approx(parts_a[key], rel=1e-5, abs=1e-6), key
    for (name, pa), pb in zip(model_a.named_parameters(), model_b.parameters()):
        assert (pa.grad is None) == (pb.grad is None), name
        if pa.grad is not None:
            diff = (pb.grad - pa.grad).abs().max().item()
            assert diff <= 1e-4 * pa.grad.abs().max().item() + 1e-6, (name, diff, pa.grad.abs().max().item())


@pytest.mark.parametrize("mini_batch_size", [1, 4, 5])
def test_cached_step_equals_the_plain_step_on_the_whole_batch(tiny_bert_dir, mini_batch_size):
    """GradCache: the loss parts and parameter gradients of one pass over the whole batch, with batch-wide
    terms (in-batch negatives with ids, the batch-scaled distances, SIGReg, the variance hinge)."""
    (model_a, model_b), (plain, cached), batch = _cached_pair(tiny_bert_dir, mini_batch_size, train=False)
    parts_a = plain.micro_step(batch, step=3, sync=True)
    parts_b = cached.micro_step(batch, step=3, sync=True)
    assert parts_a["sigreg"] > 0 and parts_a["variance"] > 0
    _assert_same(parts_a, parts_b, model_a, model_b)


def _flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_bf16_autocast_step_on_the_cpu_is_close_to_float32_and_cached_agrees(tiny_bert_dir):
    """--mixed_precision bf16 (auto's choice on an AMX-BF16 CPU): the backbone runs in bf16, the loss in float32.
    Its loss and gradient stay near float32's but are not float32's (autocast is on). GradCache under bf16
    computes the same loss, and its gradient, summed per mini-batch in bf16, points the same way."""
    (model_a, model_b), (plain, cached), batch = _cached_pair(tiny_bert_dir, 4, train=False)
    fp32 = plain.micro_step(batch, step=3, sync=True)
    fp32_grad = _flat_grad(model_a)
    model_a.zero_grad(set_to_none=True)
    plain.precision = cached.precision = "bf16"
    bf16 = plain.micro_step(batch, step=3, sync=True)
    assert bf16["total"] != fp32["total"] and bf16["total"] == pytest.approx(fp32["total"], rel=0.05)
    assert torch.nn.functional.cosine_similarity(fp32_grad, _flat_grad(model_a), dim=0) > 0.99
    bf16_cached = cached.micro_step(batch, step=3, sync=True)
    assert bf16_cached == pytest.approx(bf16, rel=1e-5, abs=1e-6)
    assert torch.nn.functional.cosine_similarity(_flat_grad(model_a), _flat_grad(model_b), dim=0) > 0.999


def test_cached_step_replays_each_mini_batchs_dropout(tiny_bert_dir):
    """In train mode the cached step equals a pass that keeps the graph of every mini-batch (same dropout
    masks, drawn in the same order): the second forward of each mini-batch replays the first's dropout."""
    (model_a, model_b), (reference, cached), batch = _cached_pair(tiny_bert_dir, 4, train=True)
    torch.manual_seed(1)
    pieces = [encode_batch(model_a, {k: v[s:s + 4] for k, v in batch.items()}) for s in (0, 4)]
    q, p, n = (torch.cat([piece[i] for piece in pieces]) for i in range(3))
    parts_a = reference._loss(batch, q, p, n, 3)
    parts_a["total"].backward()
    torch.manual_seed(1)
    parts_b = cached.micro_step(batch, step=3, sync=True)
    _assert_same({k: float(v) for k, v in parts_a.items()}, parts_b, model_a, model_b)
    # Without the replay the masks differ and so do the gradients: the test can tell.
    torch.manual_seed(2)
    other = [encode_batch(model_a, {k: v[s:s + 4] for k, v in batch.items()})[0] for s in (0, 4)]
    assert not torch.allclose(torch.cat(other), q)


def test_a_group_of_negatives_is_tokenised_encoded_and_used_together(tiny_bert_dir):
    """K hard negatives per row: Tokenize gives (B, K, L) arrays and (B, K) ids, encode_batch B·K rows in row
    order, InfoNCE takes them all as candidates (masked where they are a row's positive), and the cached step
    still equals the plain one."""
    import numpy as np

    from ragcun.errors import DataError
    from ragcun.model import TextInputs
    from ragcun.train.data import Tokenize, stable_hash, trim_padding

    torch.manual_seed(0)
    model = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=8)).eval()
    tokenize = Tokenize(TextInputs.of_model(model), source="g.json")
    groups = [[SAMPLE_DOCS[(i + 1) % 6], SAMPLE_DOCS[(i + 2) % 6]] for i in range(4)]
    raw = {"query": np.array([f"q {i}" for i in range(4)]), "positive": np.array(SAMPLE_DOCS[:4]),
           "negative": np.array([g[0] for g in groups]), "negatives": np.array(groups, dtype=object),
           "negative_ids": np.array([[f"d{(i + 1) % 6}", f"d{(i + 2) % 6}"] for i in range(4)], dtype=object),
           "positive_id": np.array([f"d{i}" for i in range(4)])}
    out = tokenize(raw)
    assert out["negative_input_ids"].shape[:2] == (4, 2) and out["negative_id"].shape == (4, 2)
    assert out["negative_id"][0, 0] == stable_hash("d1")
    with pytest.raises(DataError, match="g.json: field 'negatives': every record needs the same number"):
        tokenize({**raw, "negatives": np.array([groups[0], groups[1][:1], groups[2], groups[3]], dtype=object)})
    batch = {k: torch.as_tensor(v) for k, v in out.items()}
    q, p, n = encode_batch(model, batch)
    assert n.shape == (8, 8)
    with torch.no_grad():
        second = model(*trim_padding(batch["negative_input_ids"][1], batch["negative_attention_mask"][1]))
    torch.testing.assert_close(n[2:4], second)  # row 1's two negatives, in order
    for joint, split in zip((q, p, n), encode_batch(model, batch, joint_documents=False)):
        torch.testing.assert_close(split, joint, rtol=1e-5, atol=1e-6)
    # d1 is row 1's positive and row 0's first negative: masked in row 1, a candidate in row 0.
    loss = GaussianEmbeddingLoss(LossConfig(temperature=0.5, lambda_isotropy=0.0, lambda_variance=0.0),
                                 distributed=False)
    runner = StepRunner(model, loss, None, None)
    parts = runner._loss(batch, q, p, n, 0)
    from ragcun.losses.contrastive import squared_distances

    logits = -squared_distances(q, torch.cat([p, n])) / 0.5
    ids = torch.cat([batch["positive_id"], batch["negative_id"].reshape(-1)])
    logits = logits.masked_fill((ids[None, :] == batch["positive_id"][:, None]) & ~torch.eye(4, 12, dtype=bool),
                                float("-inf"))
    expected = torch.nn.functional.cross_entropy(logits, torch.arange(4))
    assert float(parts["contrastive"]) == pytest.approx(float(expected), rel=1e-5)
    (model_a, model_b), (plain, cached), _ = _cached_pair(tiny_bert_dir, 3, train=False)
    parts_a = plain.micro_step(batch, step=1, sync=True)
    parts_b = cached.micro_step(batch, step=1, sync=True)
    _assert_same(parts_a, parts_b, model_a, model_b)


def test_gradient_accumulation_equals_one_big_batch(tiny_bert_dir):
    torch.manual_seed(0)
    model_a = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=8)).eval()
    model_b = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=8)).eval()
    model_b.load_state_dict(model_a.state_dict())
    big = _runner(model_a, 1)
    big.micro_step(_batch(model_a, ROWS), step=0, sync=True)
    acc = _runner(model_b, 2)
    acc.micro_step(_batch(model_b, ROWS[:3]), step=0, sync=False)
    acc.micro_step(_batch(model_b, ROWS[3:]), step=0, sync=True)
    for (name, pa), pb in zip(model_a.named_parameters(), model_b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-3, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    # (Parameters after AdamW's first step are ≈ lr·sign(grad), too sensitive to compare; the gradients are
    # the claim.) The optimizer step clears the accumulated gradients.
    acc.optimizer_step()
    assert all(p.grad is None for p in model_b.parameters())


def test_checkpoint_round_trip_with_optimizer_state(tiny_bert_dir, tmp_path):
    """Stop after 2 steps, save, restore into fresh objects, take 2 more: same as 4 uninterrupted."""
    def fresh():
        torch.manual_seed(1)
        model = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=8)).eval()
        return model, _runner(model, 1)

    batch_rows = [ROWS[:3], ROWS[3:], ROWS[1:4], ROWS[2:5]]
    model_a, run_a = fresh()
    for i, rows in enumerate(batch_rows):
        run_a.micro_step(_batch(model_a, rows), step=i, sync=True)
        run_a.optimizer_step()

    model_b, run_b = fresh()
    for i, rows in enumerate(batch_rows[:2]):
        run_b.micro_step(_batch(model_b, rows), step=i, sync=True)
        run_b.optimizer_step()
    path = model_b.save_checkpoint(tmp_path / "c.pt", optimizer_state_dict=run_b.optimizer.state_dict(),
                                   scheduler_state_dict=run_b.scheduler.state_dict(), step=2, epoch=1)
    payload = load_checkpoint_payload(path)
    model_c = GaussianEmbeddingModel.from_payload(payload).eval()
    run_c = _runner(model_c, 1)
    run_c.optimizer.load_state_dict(payload["optimizer_state_dict"])
    run_c.scheduler.load_state_dict(payload["scheduler_state_dict"])
    assert payload["step"] == 2 and run_c.scheduler.last_epoch == 2
    for i, rows in enumerate(batch_rows[2:], start=2):
        run_c.micro_step(_batch(model_c, rows), step=i, sync=True)
        run_c.optimizer_step()
    for pa, pc in zip(model_a.parameters(), model_c.parameters()):
        torch.testing.assert_close(pa, pc, rtol=1e-5, atol=1e-7)


def test_head_learning_rate_and_no_decay_groups(tiny_bert_dir):
    model = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=8))
    job = TrainJobConfig(model=model.config, train=TrainConfig(learning_rate=1e-5, head_learning_rate=1e-3))
    opt = build_optimizer(model, job)
    head = {id(p) for p in model.head.parameters()}
    for group in opt.param_groups:
        is_head = any(id(p) in head for p in group["params"])
        assert group["lr"] == (1e-3 if is_head else 1e-5)
        if all(p.ndim == 1 for p in group["params"]):
            assert group["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(1 for p in model.parameters() if p.requires_grad)


def test_precision_rules(tiny_bert_dir, tiny_gemma_dir, monkeypatch):
    cpu = torch.device("cpu")
    bert = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=8))
    gemma = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_gemma_dir, output_dim=8))
    with monkeypatch.context() as patch:
        patch.setattr(loop, "cpu_has_amx_bf16", lambda: False)
        assert resolve_precision("auto", bert, cpu) == "no"
        patch.setattr(loop, "cpu_has_amx_bf16", lambda: True)
        assert resolve_precision("auto", bert, cpu) == "bf16"
        assert resolve_precision("no", bert, cpu) == "no"
    assert resolve_precision("bf16", bert, cpu) == "bf16"
    with pytest.raises(ValueError, match="Gemma"):
        resolve_precision("fp16", gemma, torch.device("cuda"))
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", bert, cpu)
    assert math.isfinite(get_lr(5, 1.0, 0, 5))


def test_amx_bf16_is_read_from_the_cpu_flags(tmp_path):
    amx, emulated = tmp_path / "amx", tmp_path / "emulated"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_bf16 amx_tile\n")
    emulated.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\nbugs\t\t: amx_bf16\n")
    assert loop.cpu_has_amx_bf16(str(amx))
    assert not loop.cpu_has_amx_bf16(str(emulated))  # the flag counts on the flags line only
    assert not loop.cpu_has_amx_bf16(str(tmp_path / "missing"))


def test_accumulation_groups_cover_the_epoch():
    from ragcun.train.loop import accumulation_group

    # 7 micro-batches, groups of 3: [1 2 3] [4 5 6] [7]
    got = [accumulation_group(m, 3, 7) for m in range(1, 8)]
    assert got == [(3, False), (3, False), (3, True), (3, False), (3, False), (3, True), (1, True)]
    assert [accumulation_group(m, 1, 2) for m in (1, 2)] == [(1, True), (1, True)]


def test_last_short_accumulation_group_is_not_under_weighted(tiny_bert_dir):
    """A group of one micro-batch (the epoch's remainder) gives that micro-batch's full mean gradient."""
    torch.manual_seed(0)
    model_a = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=8)).eval()
    model_b = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=8)).eval()
    model_b.load_state_dict(model_a.state_dict())
    _runner(model_a, 1).micro_step(_batch(model_a, ROWS[:3]), step=0, sync=True)
    _runner(model_b, 4).micro_step(_batch(model_b, ROWS[:3]), step=0, sync=True, group_size=1)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-4, atol=1e-6)


def test_resume_restores_optimizer_state_after_the_device_move(tiny_bert_dir, tmp_path):
    """CPU stand-in for resuming on a GPU: ``prepare`` moves the parameters in place (to float64 here, to
    CUDA under Ray Train). AdamW's state must follow them, so it is loaded after ``prepare``; loaded before,
    the moments keep the old dtype/device and the first step fails."""
    from ragcun.train.loop import start_training

    job = TrainJobConfig(model=ModelConfig(base_model=tiny_bert_dir, output_dim=8),
                         train=TrainConfig(learning_rate=1e-3, warmup_steps=0))
    state = start_training(job, 10, None, lambda m: m)
    runner = StepRunner(state.model, _runner(state.model, 1).loss_fn, state.optimizer, state.scheduler)
    runner.micro_step(_batch(state.model, ROWS), step=0, sync=True)
    runner.optimizer_step()
    path = state.model.save_checkpoint(tmp_path / "c.pt", optimizer_state_dict=state.optimizer.state_dict(),
                                       scheduler_state_dict=state.scheduler.state_dict(), epoch=1, step=1,
                                       training_log=[{"step": 1}])
    payload = load_checkpoint_payload(path)

    resumed = start_training(job, 10, payload, lambda m: m.to(torch.float64))
    assert (resumed.epoch, resumed.step, resumed.history) == (1, 1, [{"step": 1}])
    assert resumed.scheduler.last_epoch == 1
    for group in resumed.optimizer.param_groups:
        for param in group["params"]:
            for key in ("exp_avg", "exp_avg_sq"):
                moment = resumed.optimizer.state[param][key]
                assert (moment.dtype, moment.device) == (param.dtype, param.device)
    for param in resumed.model.parameters():
        param.grad = torch.ones_like(param)
    resumed.optimizer.step()  # mixed dtypes would raise here


def test_compile_compiles_the_backbone_and_keeps_checkpoint_names(tiny_bert_dir):
    """--compile: start_training compiles the backbone before ``prepare`` (DDP), in place, so a checkpoint's
    parameter names are the eager model's. (Compilation itself is lazy; bench/gpu_check.py's compiled
    section, run on the CPU by tests/test_gpu_check.py, runs a compiled step against the eager one.)"""
    from ragcun.train.loop import start_training

    jobs = [TrainJobConfig(model=ModelConfig(base_model=tiny_bert_dir, output_dim=8),
                           train=TrainConfig(learning_rate=1e-3, warmup_steps=0, compile=flag)) for flag in (False, True)]
    compiled_when_prepared = []
    eager, compiled = (start_training(job, 10, None, lambda m: compiled_when_prepared.append(
        m.backbone._compiled_call_impl is not None) or m) for job in jobs)
    assert compiled_when_prepared == [False, True]
    assert eager.model.backbone._compiled_call_impl is None
    assert compiled.model.backbone._compiled_call_impl is not None
    assert list(compiled.model.state_dict()) == list(eager.model.state_dict())


def test_fine_tuning_freezes_what_the_job_asks_not_what_the_checkpoint_froze(tiny_bert_dir, tmp_path):
    from ragcun.train.loop import build_model

    frozen = GaussianEmbeddingModel.from_config(ModelConfig(base_model=tiny_bert_dir, output_dim=8,
                                                            freeze_early_layers=2))
    assert not any(p.requires_grad for p in frozen.backbone.embeddings.parameters())
    path = frozen.save_checkpoint(tmp_path / "frozen.pt")
    for asked, frozen_blocks in ((0, 0), (1, 1)):
        job = TrainJobConfig(model=ModelConfig(base_model=tiny_bert_dir, freeze_early_layers=asked),
                             train=TrainConfig(model_path=str(path)))
        model = build_model(job)
        layers = model.backbone.encoder.layer
        assert [all(p.requires_grad for p in layer.parameters()) for layer in layers] == \
            [i >= frozen_blocks for i in range(len(layers))]
        assert all(p.requires_grad for p in model.backbone.embeddings.parameters()) == (asked == 0)
        assert model.config.freeze_early_layers == asked


def test_tokenize_names_the_file_and_the_missing_column(tiny_model):
    import numpy as np

    from ragcun.errors import DataError
    from ragcun.model import TextInputs
    from ragcun.train.data import Tokenize

    tokenize = Tokenize(TextInputs.of_model(tiny_model), source="runs/train.json")
    with pytest.raises(DataError, match=r"runs/train.json: field 'query': training data has no 'query' column"):
        tokenize({"positive": np.array(["a cat"])})
    with pytest.raises(DataError, match=r"runs/train.json: field 'positive': empty text"):
        tokenize({"query": np.array(["cats"]), "positive": np.array(["  "])})
    out = tokenize({"query": np.array(["cats"]), "positive": np.array(["a cat sleeps"])})
    assert out["query_input_ids"].shape[0] == 1


def test_tokenize_hashes_missing_ids_by_text_and_carries_positive_sets(tiny_model):
    import numpy as np

    from ragcun.model import TextInputs
    from ragcun.train.data import MAX_POSITIVES, Tokenize, stable_hash

    tokenize = Tokenize(TextInputs.of_model(tiny_model), source="t.json")
    out = tokenize({"query": np.array(["cats", "dogs"]), "positive": np.array(["a cat", "a dog"]),
                    "positive_id": np.array([None, None], dtype=object),
                    "positive_ids": np.array([np.array(["d1", "d2"]), None], dtype=object)})
    assert out["positive_id"].tolist() == [stable_hash("a cat"), stable_hash("a dog")]  # not one hash of "None"
    sets = out["query_positive_ids"]
    assert sets.shape == (2, MAX_POSITIVES)
    assert sets[0, :2].tolist() == [stable_hash("d1"), stable_hash("d2")] and (sets[0, 2:] == -1).all()
    assert sets[1, 0] == stable_hash("a dog") and (sets[1, 1:] == -1).all()


def test_documents_share_a_forward_pass_except_under_bf16_on_a_cpu():
    """The rule behind StepRunner.joint_documents (bench/train_bench.py measures it); an explicit choice wins."""
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert StepRunner(None, None, None, None, precision="no", device=cpu).joint_documents
    assert not StepRunner(None, None, None, None, precision="bf16", device=cpu).joint_documents
    assert StepRunner(None, None, None, None, precision="bf16", device=cuda).joint_documents
    runner = StepRunner(None, None, None, None, precision="bf16", device=cpu, joint_documents=True)
    assert runner.joint_documents
    runner.joint_documents = None
    assert not runner.joint_documents


@pytest.mark.parametrize("compression", ["none", "fp16"])
def test_gradient_compression_rounds_what_ddp_exchanges_to_fp16(compression):
    """--gradient_compression fp16 registers DDP's float16 hook: on a real gloo group (one rank) the averaged
    gradient is the gradient rounded to float16; without it the gradient is exchanged exactly."""
    import torch.distributed as dist

    from ragcun.serving import free_port
    from ragcun.train.loop import compress_gradients

    torch.manual_seed(0)
    plain = torch.nn.Linear(32, 8)
    inputs = torch.randn(16, 32)
    plain(inputs).square().sum().backward()
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        wrapped = torch.nn.Linear(32, 8)
        wrapped.load_state_dict(plain.state_dict())
        ddp = compress_gradients(torch.nn.parallel.DistributedDataParallel(wrapped), compression)
        ddp(inputs).square().sum().backward()
    finally:
        dist.destroy_process_group()
    for p_plain, p_ddp in zip(plain.parameters(), wrapped.parameters()):
        want = p_plain.grad.half().float() if compression == "fp16" else p_plain.grad
        torch.testing.assert_close(p_ddp.grad, want, rtol=0, atol=0)
        assert torch.equal(p_ddp.grad, p_plain.grad) == (compression == "none")
