"""Graph inference and the graph constraint against plain float64 loops."""

import math

import pytest
import torch
import torch.nn.functional as F

from mlfo.losses import graph_loss, infer_graph


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def test_infer_graph_matches_loops():
    n, k, threshold = 6, 3, 0.12
    p_ins = torch.softmax(unit(n, 4, seed=1) @ unit(n, 4, seed=2).t() / 0.3, dim=1)
    codes_a = torch.softmax(torch.randn(n, k, generator=torch.Generator().manual_seed(3),
                                        dtype=torch.float64), dim=1)
    codes_b = torch.softmax(torch.randn(n, k, generator=torch.Generator().manual_seed(4),
                                        dtype=torch.float64), dim=1)
    w = infer_graph(p_ins, codes_a, codes_b, threshold)

    labels = [max(range(k), key=lambda c: float(codes_a[i, c] + codes_b[i, c])) for i in range(n)]
    for i in range(n):
        row = [float(p_ins[i, j]) if (float(p_ins[i, j]) >= threshold or i == j) and labels[i] == labels[j]
               else 0.0 for j in range(n)]
        for j in range(n):
            assert w[i, j].item() == pytest.approx(row[j] / sum(row), rel=1e-12, abs=1e-15)
    assert (w.diagonal() > 0).all()
    assert ((w > 0).sum() > n)  # this problem keeps some neighbours besides the diagonal
    assert ((w > 0).sum() < n * n)  # and drops some


def test_infer_graph_keeps_the_diagonal_below_threshold():
    p_ins = torch.full((3, 3), 1 / 3, dtype=torch.float64)
    codes = torch.eye(3, dtype=torch.float64)  # every video in its own cluster
    torch.testing.assert_close(infer_graph(p_ins, codes, codes, threshold=0.9),
                               torch.eye(3, dtype=torch.float64))


def brute_graph_loss(g_a, g_b, w, tau):
    n = len(g_a)
    entries = []
    for i in range(n):
        logits = [sum(float(x) * float(y) for x, y in zip(g_a[i], g_b[j])) / tau for j in range(n)]
        log_z = math.log(sum(math.exp(s) for s in logits))
        entries.append([-float(w[i, j]) * (logits[j] - log_z) for j in range(n)])
    reference = sum(map(sum, entries)) / (n * n)  # mean over all B x B entries
    per_anchor = sum(sum(row) for row in entries) / n  # sum over j, mean over i
    return reference, per_anchor


def test_graph_loss_matches_loops_for_both_reductions():
    n = 5
    g_a, g_b = unit(n, 4, seed=5), unit(n, 4, seed=6)
    w = torch.softmax(torch.randn(n, n, generator=torch.Generator().manual_seed(7),
                                  dtype=torch.float64), dim=1)
    reference, per_anchor = brute_graph_loss(g_a, g_b, w, 0.07)
    assert graph_loss(g_a, g_b, w, 0.07, "reference").item() == pytest.approx(reference, rel=1e-10)
    assert graph_loss(g_a, g_b, w, 0.07, "per_anchor").item() == pytest.approx(per_anchor, rel=1e-10)
    # the reference reduction is the per-anchor loss divided by the global batch
    assert reference == pytest.approx(per_anchor / n, rel=1e-12)


def test_uniform_target_is_plain_soft_cross_entropy():
    n = 4
    g_a, g_b = unit(n, 3, seed=8), unit(n, 3, seed=9)
    uniform = torch.full((n, n), 1 / n, dtype=torch.float64)
    logits = g_a @ g_b.t() / 0.07
    soft_ce = F.cross_entropy(logits, uniform)  # torch's soft-target cross-entropy
    torch.testing.assert_close(graph_loss(g_a, g_b, uniform, 0.07, "per_anchor"), soft_ce)
    torch.testing.assert_close(graph_loss(g_a, g_b, uniform, 0.07, "reference"), soft_ce / n)
    # identity target: the plain (hard) cross-entropy of A_i retrieving B_i
    hard = F.cross_entropy(logits, torch.arange(n))
    torch.testing.assert_close(graph_loss(g_a, g_b, torch.eye(n, dtype=torch.float64), 0.07,
                                          "per_anchor"), hard)


def test_graph_loss_rejects_unknown_reduction():
    g = unit(2, 3)
    with pytest.raises(ValueError, match="reduction"):
        graph_loss(g, g, torch.eye(2, dtype=torch.float64), reduction="sum")


def test_graph_memory_adds_columns_and_keeps_the_batch_normalisation():
    n, m = 4, 3
    g_a, g_b, mem = unit(n, 4, seed=10), unit(n, 4, seed=11), unit(m, 4, seed=12)
    w = torch.softmax(torch.randn(n, n + m, generator=torch.Generator().manual_seed(13),
                                  dtype=torch.float64), dim=1)
    logits = g_a @ torch.cat([g_b, mem]).t() / 0.07
    expected = -(w * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(graph_loss(g_a, g_b, w, 0.07, "per_anchor", memory_keys=mem), expected)
    torch.testing.assert_close(graph_loss(g_a, g_b, w, 0.07, "reference", memory_keys=mem), expected / n)
    # no gradient into the memory
    mem_grad, g_a_grad = mem.clone().requires_grad_(True), g_a.clone().requires_grad_(True)
    graph_loss(g_a_grad, g_b, w, 0.07, memory_keys=mem_grad).backward()
    assert mem_grad.grad is None and g_a_grad.grad.abs().sum() > 0


def test_infer_graph_masks_memory_columns_by_their_stored_cluster():
    codes = torch.eye(2, dtype=torch.float64)  # batch videos in clusters 0 and 1
    p_ins = torch.full((2, 5), 0.2, dtype=torch.float64)  # 2 batch + 3 memory columns
    w = infer_graph(p_ins, codes, codes, threshold=0.1, memory_labels=torch.tensor([0, 1, 0]))
    assert (w[0] > 0).tolist() == [True, False, True, False, True]
    assert (w[1] > 0).tolist() == [False, True, False, True, False]
    torch.testing.assert_close(w.sum(dim=1), torch.ones(2, dtype=torch.float64))
