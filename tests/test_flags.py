"""ragcun.flags: argparse flags and a pydantic model generated from configuration dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Literal

import pydantic
import pytest

from ragcun.config import EvalConfig, PrepareConfig, ServeConfig, SweepConfig, TrainJobConfig
from ragcun.flags import add_flags, from_args, option, pydantic_model


@dataclasses.dataclass
class Example:
    """An example configuration."""

    path: str = option("", required=True, help="where")
    size: int | None = option(None, help="how many")
    ratio: float = option(0.5, help="a ratio")
    kind: Literal["a", "b"] = option("a", help="which")
    verbose: bool = option(False, help="say more")
    keep: bool = option(True, help="keep it")
    split: tuple[float, float] | None = option(None, help="two ratios")
    level: int = option(0, nargs="?", const=4, help="bare flag: 4")
    label: str | None = option(None, flag="run_label", help="renamed flag")
    left: str | None = option(None, one_of="side", help="one side")
    right: str | None = option(None, one_of="side", help="the other side")
    hidden: dict = option(default_factory=dict, cli=False)
    tags: tuple[str, ...] = option((), help="any number")
    modes: tuple[Literal["x", "y"], ...] = option(("x",), nargs="+", help="at least one of x, y")


def parse(*argv: str) -> Example:
    p = argparse.ArgumentParser()
    add_flags(p, Example)
    return from_args(Example, p.parse_args(list(argv)))


def test_types_defaults_and_switches():
    e = parse("--path", "x")
    assert e == Example(path="x")
    e = parse("--path", "x", "--size", "3", "--ratio", "0.25", "--kind", "b", "--verbose", "--no_keep",
              "--split", "0.9", "0.1", "--level", "--run_label", "r", "--left", "l")
    assert e == Example(path="x", size=3, ratio=0.25, kind="b", verbose=True, keep=False, split=(0.9, 0.1), level=4,
                        label="r", left="l")
    assert isinstance(e.split, tuple)
    assert parse("--path", "x", "--no-keep").keep is False and parse("--path", "x", "--keep").keep is True
    e = parse("--path", "x", "--tags", "a", "b", "c", "--modes", "y", "x")
    assert e.tags == ("a", "b", "c") and e.modes == ("y", "x") and parse("--path", "x", "--tags").tags == ()


@pytest.mark.parametrize("argv", [[], ["--path", "x", "--kind", "c"], ["--path", "x", "--size", "many"],
                                  ["--path", "x", "--left", "l", "--right", "r"], ["--path", "x", "--hidden", "{}"],
                                  ["--path", "x", "--label", "r"], ["--path", "x", "--modes", "z"],
                                  ["--path", "x", "--modes"]])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert info.value.code == 2 and "error:" in capsys.readouterr().err


def test_help_comes_from_the_fields(capsys):
    p = argparse.ArgumentParser()
    add_flags(p, Example)
    text = p.format_help()
    assert "An example configuration." in text and "renamed flag" in text and "--run_label" in text


def test_every_field_of_the_jobs_has_a_flag():
    # What the training job, the sweep and prepare_data accept: every field that is not set by the program.
    p = argparse.ArgumentParser()
    add_flags(p, *TrainJobConfig.SECTIONS)
    add_flags(p, SweepConfig)
    dests = {a.dest for a in p._actions}
    for section in (*TrainJobConfig.SECTIONS, SweepConfig):
        for f in dataclasses.fields(section):
            if f.metadata.get("cli", True):
                assert (f.metadata.get("flag") or f.name) in dests, f"{section.__name__}.{f.name} has no flag"
    for name in ("num_knots", "sigreg_t_max", "slice_seed", "variance_target", "min_lr_ratio", "val_batch_size",
                 "head_init", "query_prompt", "document_prompt"):
        assert name in dests
    prepare = argparse.ArgumentParser()
    add_flags(prepare, PrepareConfig)
    cfg = from_args(PrepareConfig, prepare.parse_args(["--beir_dir", "b", "--split", "0.8", "0.2", "0", "--no_shuffle"]))
    assert cfg.split == (0.8, 0.2, 0.0) and cfg.shuffle is False and cfg.add_negatives is True


def test_a_flag_reaches_the_loss_config():
    p = argparse.ArgumentParser()
    add_flags(p, *TrainJobConfig.SECTIONS)
    job = TrainJobConfig.from_args(p.parse_args(["--train_data", "t.json", "--num_knots", "9", "--output_dim", "0",
                                                 "--run_name", "r"]))
    assert job.loss.num_knots == 9 and job.model.output_dim is None and job.ray.name == "r"
    assert TrainJobConfig.from_dict(job.to_dict()) == job


def test_pydantic_model_converts_and_refuses():
    model = pydantic_model(ServeConfig)
    args = model.model_validate({"index_dir": "x", "max_top_k": "5", "autoscaling": '{"max_replicas": 2}'})
    assert args.max_top_k == 5 and args.autoscaling == {"max_replicas": 2} and args.num_cpus == 1.0
    assert ServeConfig(**args.model_dump()).max_top_k == 5
    with pytest.raises(pydantic.ValidationError):
        model.model_validate({"top_k": 3})


def test_lambda_reg_is_a_deprecated_alias_of_lambda_variance(caplog):
    from ragcun.config import LossConfig

    p = argparse.ArgumentParser()
    add_flags(p, *TrainJobConfig.SECTIONS)
    with caplog.at_level("WARNING"):
        job = TrainJobConfig.from_args(p.parse_args(["--train_data", "t.json", "--lambda_reg", "0.3"]))
    assert job.loss.lambda_variance == 0.3
    assert "--lambda_reg is deprecated" in caplog.text and "--lambda_variance" in caplog.text
    assert TrainJobConfig.from_args(p.parse_args(["--train_data", "t.json"])).loss.lambda_variance == 0.1
    assert "lambda_reg" not in p.format_help()
    # A checkpoint or sweep result written before the rename still loads.
    old = {**LossConfig().to_dict(), "lambda_reg": 0.7}
    del old["lambda_variance"]
    assert LossConfig.from_dict(old).lambda_variance == 0.7


def test_the_evaluation_flags_come_from_eval_config(tmp_path):
    p = argparse.ArgumentParser()
    add_flags(p, EvalConfig)
    dests = {a.dest for a in p._actions}
    assert all(f.name in dests for f in dataclasses.fields(EvalConfig))
    cfg = from_args(EvalConfig, p.parse_args(["--model_path", "a/best_model.pt", "b=c/final_model.pt", "--beir_dir",
                                              "d", "--distance", "l2", "cosine", "l2", "--baselines", "bm25",
                                              "--compress", "int8", "binary"]))
    assert cfg.checkpoints() == [("a", "a/best_model.pt"), ("b", "c/final_model.pt")]
    assert cfg.distance == ("l2", "cosine") and cfg.baselines == ("bm25",) and cfg.compress == ("int8", "binary")
    # Without a checkpoint the evaluated model is the base model: "base" as a baseline would be a copy.
    assert EvalConfig(base_model="m", test_data="t", baselines=("base", "bm25")).baselines == ("bm25",)
    for bad, message in ((dict(test_data="t"), "--model_path and/or --base_model"),
                         (dict(base_model="m"), "one of --test_data and --beir_dir"),
                         (dict(base_model="m", test_data="t", top_k=0), "--top_k must be >= 1"),
                         (dict(base_model="m", test_data="t", hybrid_alpha=1.5), "--hybrid_alpha"),
                         (dict(model_path=("a/x.pt", "a/x.pt"), test_data="t"), "share a name")):
        with pytest.raises(ValueError, match=message):
            EvalConfig(**bad)
    with pytest.raises(SystemExit):
        p.parse_args(["--base_model", "m", "--test_data", "t", "--distance", "hamming"])
