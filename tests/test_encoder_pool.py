"""The Ray Data encoder pool (ragcun.encoder_pool) on a local Ray: the one code path that embeds a corpus."""

from __future__ import annotations

import numpy as np
import pytest

from ragcun.config import EncoderPoolConfig


def test_encode_texts_equals_the_model_in_order_over_several_blocks_and_encoders(tiny_model, ray_cluster,
                                                                                   monkeypatch):
    import ragcun.encoder_pool as pool_module

    monkeypatch.setattr(pool_module, "TEXT_BLOCK_ROWS", 7)  # 50 texts → 8 blocks, shared by 2 actors
    texts = [f"document {i} " + "word " * (i % 9) for i in range(50)]
    vectors = pool_module.encode_texts(texts, tiny_model, EncoderPoolConfig(num_encoders=2), batch_size=4)
    expected = tiny_model.encode(texts, "document")
    assert vectors.shape == expected.shape == (50, tiny_model.output_dim)
    assert np.allclose(vectors, expected, atol=1e-5)
    assert pool_module.encode_texts([], tiny_model, EncoderPoolConfig(), batch_size=4).shape == (0, 16)


@pytest.mark.parametrize(("pool", "cluster_cpus", "expected"), [
    (EncoderPoolConfig(), 2.0, (1.0, 2)),                        # the pool reserves what headroom leaves
    (EncoderPoolConfig(num_encoders=2), 8.0, (3.5, 4)),
    (EncoderPoolConfig(cpus_per_encoder=0.5), 2.0, (0.5, 1)),
])
def test_encoder_resources(pool, cluster_cpus, expected):
    from ragcun.encoder_pool import encoder_resources

    assert encoder_resources(pool, cluster_cpus, read_cpus=0.25) == expected


def test_encoder_resources_refuse_a_pool_that_does_not_fit():
    from ragcun.encoder_pool import encoder_resources

    with pytest.raises(ValueError, match="do not fit"):
        encoder_resources(EncoderPoolConfig(num_encoders=2, cpus_per_encoder=1.0), 2.0, read_cpus=0.25)
    with pytest.raises(ValueError, match="num_encoders must be >= 1"):
        EncoderPoolConfig(num_encoders=0)
    with pytest.raises(ValueError, match="runs on the CPU"):
        EncoderPoolConfig(use_gpu=True, encoder_backend="openvino-bf16")
    assert EncoderPoolConfig(use_gpu=True, encoder_backend="auto").use_gpu  # auto means torch on a GPU


def test_prepare_flags_reach_the_pool():
    import sys

    from .conftest import REPO

    sys.path.insert(0, str(REPO / "jobs"))
    from prepare_data import parse_args

    cfg = parse_args(["--beir_dir", "x", "--num_encoders", "2", "--cpus_per_encoder", "0.5",
                      "--encoder_backend", "openvino-int8"])
    assert cfg.encoders == EncoderPoolConfig(num_encoders=2, cpus_per_encoder=0.5, encoder_backend="openvino-int8")
    with pytest.raises(SystemExit):
        parse_args(["--beir_dir", "x", "--num_encoders", "0"])
