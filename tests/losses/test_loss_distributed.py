"""Two gloo processes holding halves of a global batch must reproduce one process on the
whole batch: the same losses, targets and (DDP-averaged) gradients."""

import pytest
import torch
import torch.multiprocessing as mp

from loss_dist_worker import loss_features, loss_terms, run_model, run_objective, split_rows, worker

WORLD = 2


def _spawn(tmp_path, loss_sizes, with_model):
    init_file = tmp_path / "store"
    mp.spawn(worker, args=(WORLD, str(init_file), str(tmp_path), loss_sizes, with_model),
             nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]


def _single_losses(n_global):
    feats = {k: (v if k == "queue" else v.clone().requires_grad_(True))
             for k, v in loss_features(n_global).items()}
    losses, targets = loss_terms(feats)
    torch.stack(list(losses.values())).sum().backward()
    grads = {k: v.grad for k, v in feats.items() if k != "queue"}
    return losses, targets, grads


def _check_losses(ranks, loss_sizes):
    n_global = sum(loss_sizes)
    losses, targets, grads = _single_losses(n_global)
    for name, value in losses.items():
        # each rank returned its local mean x (its rows * world / n_global)
        distributed = sum(r["losses"][name] for r in ranks) / WORLD
        torch.testing.assert_close(distributed, value.detach(), rtol=1e-10, atol=1e-12, msg=name)
    for rank, result in enumerate(ranks):
        rows = split_rows(loss_sizes, rank)
        for name in ("p_ins", "codes_a", "codes_queue", "graph"):
            torch.testing.assert_close(result["targets"][name], targets[name][rows], rtol=1e-9,
                                       atol=1e-12, msg=name)
        for name, grad in result["feature_grads"].items():
            # summed over ranks by the gather's backward; DDP would divide by WORLD
            torch.testing.assert_close(grad / WORLD, grads[name][rows], rtol=1e-9, atol=1e-12,
                                       msg=name)


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    ranks = _spawn(tmp_path, loss_sizes=[3, 3], with_model=True)
    _check_losses(ranks, [3, 3])

    single = run_objective(slice(0, 8))
    totals = sum(r["objective"]["totals"] for r in ranks) / WORLD
    torch.testing.assert_close(totals, single["totals"], rtol=1e-10, atol=1e-12)
    assert single["queue"].shape[1] == 12  # the second step used the queue
    for rank in ranks:
        torch.testing.assert_close(rank["objective"]["queue"], single["queue"])
        for name, grad in single["grads"].items():
            torch.testing.assert_close(rank["objective"]["grads"][name], grad, rtol=1e-8,
                                       atol=1e-11, msg=name)

    model = run_model(slice(0, 4))
    torch.testing.assert_close(sum(r["model"]["totals"] for r in ranks) / WORLD, model["totals"],
                               rtol=1e-9, atol=1e-11)
    assert set(ranks[0]["model"]["grads"]) == set(model["grads"])
    for name, grad in model["grads"].items():
        torch.testing.assert_close(ranks[0]["model"]["grads"][name], grad, rtol=1e-7, atol=1e-10,
                                   msg=name)
