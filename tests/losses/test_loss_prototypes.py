"""Sinkhorn-Knopp, swapped prototype prediction and the embedding queue."""

import math

import pytest
import torch
import torch.nn.functional as F

from mlfo.losses import EmbeddingQueue, prototype_codes, sinkhorn, swapped_prediction


def cosine_scores(n, k, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(n, 16, generator=g, dtype=dtype), dim=1)
    c = F.normalize(torch.randn(k, 16, generator=g, dtype=dtype), dim=1)
    return z @ c.t()


def swav_sinkhorn(scores, eps, iters):
    """SwAV's published single-process algorithm, linear domain, plain float64 loops."""
    n, k = scores.shape
    q = [[math.exp(float(scores[i, j]) / eps) for i in range(n)] for j in range(k)]  # K x N
    total = sum(map(sum, q))
    q = [[x / total for x in row] for row in q]
    for _ in range(iters):
        q = [[x / sum(row) / k for x in row] for row in q]  # prototypes: mass 1/K
        col = [sum(q[j][i] for j in range(k)) for i in range(n)]
        q = [[q[j][i] / col[i] / n for i in range(n)] for j in range(k)]  # samples: mass 1/N
    return torch.tensor([[q[j][i] * n for j in range(k)] for i in range(n)], dtype=torch.float64)


@pytest.mark.parametrize("n,k,iters", [(6, 4, 3), (5, 9, 1), (12, 3, 5)])
def test_sinkhorn_matches_swav_reference(n, k, iters):
    scores = cosine_scores(n, k)
    torch.testing.assert_close(sinkhorn(scores, 0.05, iters), swav_sinkhorn(scores, 0.05, iters),
                               rtol=1e-9, atol=1e-12)
    # float32 input: computed in float32, same answer to float32 precision
    torch.testing.assert_close(sinkhorn(scores.float(), 0.05, iters),
                               swav_sinkhorn(scores, 0.05, iters).float(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("n,k", [(64, 10), (256, 32), (8, 50)])
def test_sinkhorn_rows_sum_to_one_and_marginals_near_uniform(n, k):
    scores = cosine_scores(n, k, seed=1).float()
    q = sinkhorn(scores, eps=0.05, iters=3)
    torch.testing.assert_close(q.sum(dim=1), torch.ones(n), rtol=0, atol=1e-5)
    marginal = q.sum(dim=0) * k / n  # 1 everywhere for perfectly equal clusters
    assert (marginal - 1).abs().max() < 0.7
    # every sample prefers prototype 0: a plain softmax puts nearly all mass there,
    # Sinkhorn spreads it (the equipartition that prevents collapse)
    skewed = scores.clone()
    skewed[:, 0] += 1.0
    plain = F.softmax(skewed / 0.05, dim=1).sum(dim=0) * k / n
    spread = sinkhorn(skewed, eps=0.05, iters=3).sum(dim=0) * k / n
    assert plain[0] > 0.5 * k and spread[0] < 2
    converged = sinkhorn(scores, eps=0.05, iters=200).sum(dim=0) * k / n
    torch.testing.assert_close(converged, torch.ones(k), rtol=0, atol=1e-3)


def test_sinkhorn_stable_for_large_scores_and_bf16_autocast():
    scores = cosine_scores(32, 20, seed=2).float() * 40  # exp(score / eps) overflows float32
    assert torch.isinf(torch.exp(scores / 0.05)).any()
    q = sinkhorn(scores)
    assert torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(32), rtol=0, atol=1e-5)

    layer = torch.nn.Linear(16, 20, bias=False)
    x = torch.randn(32, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16_scores = layer(x)
        assert bf16_scores.dtype == torch.bfloat16
        q = sinkhorn(bf16_scores)
    assert q.dtype == torch.float32 and torch.isfinite(q).all()
    torch.testing.assert_close(q.sum(dim=1), torch.ones(32), rtol=0, atol=1e-5)
    torch.testing.assert_close(q, sinkhorn(bf16_scores.float()))


def test_swapped_prediction_matches_loops():
    s_a, s_b = cosine_scores(4, 5, seed=3), cosine_scores(4, 5, seed=4)
    q_a, q_b = sinkhorn(s_a), sinkhorn(s_b)
    loss = swapped_prediction(s_a, s_b, q_a, q_b, temperature=0.1)
    total = 0.0
    for i in range(4):
        for s, q in ((s_a[i], q_b[i]), (s_b[i], q_a[i])):
            log_z = math.log(sum(math.exp(float(x) / 0.1) for x in s))
            total += -0.5 * sum(float(q[j]) * (float(s[j]) / 0.1 - log_z) for j in range(5))
    assert loss.item() == pytest.approx(total / 4, rel=1e-10)


def test_prototype_codes_with_queue_solve_over_queue_and_batch():
    batch, queue = cosine_scores(4, 6, seed=5), cosine_scores(10, 6, seed=6)
    codes = prototype_codes(batch, queue, eps=0.05, iters=3)
    expected = sinkhorn(torch.cat([queue, batch]), 0.05, 3)[10:]
    torch.testing.assert_close(codes, expected)
    assert not torch.allclose(codes, prototype_codes(batch, None))  # the queue matters
    torch.testing.assert_close(prototype_codes(batch, queue[:0]), sinkhorn(batch))


def test_embedding_queue_is_fifo_and_survives_state_dict():
    queue = EmbeddingQueue(length=5, dim=0)
    assert queue.valid().shape == (2, 0, 0)
    first = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)
    second = -torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4) - 1
    queue.push(first)
    assert int(queue.count) == 3
    torch.testing.assert_close(queue.valid(), first)
    queue.push(second)  # newest first; the oldest row of `first` drops off
    assert int(queue.count) == 5
    torch.testing.assert_close(queue.valid(), torch.cat([second, first[:, :2]], dim=1))

    restored = EmbeddingQueue(length=5, dim=0)
    restored.load_state_dict(queue.state_dict())
    torch.testing.assert_close(restored.valid(), queue.valid())
    shorter = EmbeddingQueue(length=4, dim=0)  # queue_length changed on resume: keep newest
    shorter.load_state_dict(queue.state_dict())
    assert int(shorter.count) == 4
    torch.testing.assert_close(shorter.valid(), queue.valid()[:, :4])

    big = torch.ones(2, 9, 4)
    queue.push(big)  # more rows than the queue holds
    torch.testing.assert_close(queue.valid(), big[:, :5])
