"""--group_by_length: windows sorted by length, cut into batches, the batches' order shuffled by seed."""

from __future__ import annotations

import json

import torch

from ragcun.config import TrainJobConfig
from ragcun.train.data import (
    LENGTH_GROUP_WINDOW,
    length_grouped_batches,
    length_key,
    training_batches,
    trim_padding,
)


def window(lengths: list[int], width: int = 40, negatives: int | None = None, first_id: int = 0) -> dict:
    """Rows whose positive has the given number of real tokens; queries of 3 tokens; ids count up."""
    rows = len(lengths)
    mask = torch.zeros(rows, width, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    batch = {"query_input_ids": torch.ones(rows, 8, dtype=torch.long),
             "query_attention_mask": torch.cat([torch.ones(rows, 3), torch.zeros(rows, 5)], 1).long(),
             "positive_input_ids": mask * 7, "positive_attention_mask": mask,
             "positive_id": torch.arange(first_id, first_id + rows)}
    if negatives:
        batch["negative_attention_mask"] = torch.zeros(rows, negatives, width, dtype=torch.long)
        batch["negative_input_ids"] = torch.zeros(rows, negatives, width, dtype=torch.long)
    return batch


def padded_tokens(batches) -> int:
    return sum(trim_padding(b["positive_input_ids"], b["positive_attention_mask"])[0].numel() for b in batches)


def test_every_row_once_in_batches_of_similar_length():
    lengths = torch.randint(1, 40, (203,), generator=torch.Generator().manual_seed(0)).tolist()
    batches = list(length_grouped_batches([window(lengths)], 8, seed=3))
    assert [len(b["positive_id"]) for b in batches].count(8) == 25 and len(batches) == 26  # ceil(203 / 8)
    ids = torch.cat([b["positive_id"] for b in batches])
    assert sorted(ids.tolist()) == list(range(203))
    for b in batches:  # rows stay with their own columns
        assert (b["positive_attention_mask"].sum(1) == torch.tensor(lengths)[b["positive_id"]]).all()
    # Cut from the sorted window: ordered by their shortest row, the batches' lengths never interleave.
    spans = sorted((int(b["positive_attention_mask"].sum(1).min()), int(b["positive_attention_mask"].sum(1).max()))
                   for b in batches)
    assert all(high <= next_low for (_, high), (next_low, _) in zip(spans, spans[1:]))
    # ... and pad much less than the same rows in random batches.
    random_order = list(training_batches(lambda batch_size: (window(lengths[i:i + batch_size], first_id=i)
                                                             for i in range(0, 203, batch_size)), 8, False, seed=3))
    assert padded_tokens(batches) < 0.75 * padded_tokens(random_order)


def test_the_order_of_batches_is_the_seed_s_and_the_same_on_every_rank():
    """Two ranks' windows hold different rows; with the same seed, step k takes the batch from the same place
    of each sorted window (so their lengths match), and another seed gives another order."""
    def places(lengths, seed, first_id):
        rank = torch.argsort(torch.argsort(torch.tensor(lengths), stable=True))  # each row's place when sorted
        return [int(rank[b["positive_id"] - first_id].min()) for b in
                length_grouped_batches([window(lengths, first_id=first_id)], 4, seed)]

    rank0 = torch.randperm(40, generator=torch.Generator().manual_seed(1)).add(1).tolist()
    rank1 = torch.randperm(40, generator=torch.Generator().manual_seed(2)).add(1).tolist()
    assert places(rank0, 5, 0) == places(rank1, 5, 100)
    assert places(rank0, 5, 0) != places(rank0, 6, 0)
    assert sorted(places(rank0, 5, 0)) == list(range(0, 40, 4))


def test_the_key_is_the_longest_document_then_the_query():
    batch = window([5, 5, 2], negatives=2)
    batch["negative_attention_mask"][2, 1, :9] = 1  # row 2: its longest document is a negative of 9 tokens
    batch["query_attention_mask"][1, 3] = 1  # row 1: a longer query breaks the tie with row 0
    assert torch.argsort(length_key(batch)).tolist() == [0, 1, 2]
    grouped = list(length_grouped_batches([batch], 2, seed=0))
    assert sorted(len(b["positive_id"]) for b in grouped) == [1, 2]
    assert all(b["negative_attention_mask"].shape[1:] == (2, 40) for b in grouped)


def test_windows_hold_fifty_batches_and_the_epoch_keeps_its_batch_count():
    asked = []

    def fetch(batch_size):
        asked.append(batch_size)
        lengths = [1 + i % 30 for i in range(1000)]
        return (window(lengths[i:i + batch_size], first_id=i) for i in range(0, 1000, batch_size))

    batches = list(training_batches(fetch, 16, True, seed=0))
    assert asked == [16 * LENGTH_GROUP_WINDOW] and len(batches) == -(-1000 // 16)
    assert sorted(torch.cat([b["positive_id"] for b in batches]).tolist()) == list(range(1000))


def test_in_process_training_groups_its_batches(tiny_bert_dir, tiny_triplets, tmp_path):
    """train_in_process with and without --group_by_length: as many steps either way (48 triplets, batch 5:
    10), and other batches (so other losses) when grouped, the seed and everything else being the same."""
    from ragcun.train.local import train_in_process

    train, _ = tiny_triplets

    def losses(group: bool) -> list[float]:
        job = TrainJobConfig.from_dict({"model": {"base_model": tiny_bert_dir, "output_dim": 16},
                                        "loss": {"num_slices": 16},
                                        "train": {"train_data": str(train), "output_dir": str(tmp_path), "epochs": 1,
                                                  "batch_size": 5, "warmup_steps": 1, "group_by_length": group},
                                        "ray": {}})
        return [h["total"] for h in train_in_process(job)[1]]

    random_batches, grouped = losses(False), losses(True)
    assert len(random_batches) == len(grouped) == -(-len(json.loads(train.read_text())) // 5)
    assert all(torch.isfinite(torch.tensor(random_batches + grouped)))
    assert random_batches != grouped
