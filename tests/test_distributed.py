"""DistributedDataParallel (gloo, 2 processes) trains HAT and WSN backbones like one process does."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ddp_helpers import rank_main, train

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


@pytest.mark.parametrize("method", ["hat", "wsn"])
def test_two_ranks_match_one_process_on_the_whole_batch(method, tmp_path):
    mp.spawn(rank_main, args=(2, method, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    single = train(method)
    assert ranks[0].keys() == ranks[1].keys() == single.keys()
    initial = train(method, steps=0)
    assert any(not torch.equal(single[name], initial[name]) for name in single)  # training moved something
    for name in single:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        torch.testing.assert_close(ranks[0][name], single[name], rtol=1e-5, atol=1e-6, msg=name)
