"""Instance contrast, motion contrast and timestamp matching against plain float64 loops."""

import math

import pytest
import torch
import torch.nn.functional as F

from mlfo.losses import instance_contrast, motion_contrast, timestamp_matching


def unit(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def dot(u, v):
    return sum(float(a) * float(b) for a, b in zip(u, v))


def brute_info_nce(z_a, z_b, tau, rev_a=None, rev_b=None, source="both"):
    """Loop version of method.md §3a/b: loss, accuracy."""
    n = len(z_a)
    total, hits = 0.0, 0
    for v in range(n):
        for anchor, positive, own, other in ((z_a[v], z_b[v], "a", "b"), (z_b[v], z_a[v], "b", "a")):
            pos = dot(anchor, positive)
            negs = [dot(anchor, z[u]) for u in range(n) if u != v for z in (z_a, z_b)]
            if rev_a is not None:
                reversed_of = {"a": rev_a[v], "b": rev_b[v]}
                picks = {"both": ("a", "b"), "positive": (other,), "anchor": (own,)}[source]
                negs += [dot(anchor, reversed_of[k]) for k in picks]
            denominator = math.exp(pos / tau) + sum(math.exp(s / tau) for s in negs)
            total += -math.log(math.exp(pos / tau) / denominator)
            hits += pos > max(negs, default=-math.inf)
    return total / (2 * n), hits / (2 * n)


@pytest.mark.parametrize("n,tau", [(1, 0.07), (3, 0.07), (5, 0.5)])
def test_instance_contrast_matches_loops(n, tau):
    z_a, z_b = unit(n, 6, seed=1), unit(n, 6, seed=2)
    loss, acc, p_ins = instance_contrast(z_a, z_b, tau)
    ref_loss, ref_acc = brute_info_nce(z_a, z_b, tau)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-10)
    assert acc.item() == pytest.approx(ref_acc)
    for i in range(n):
        row = [math.exp(dot(z_a[i], z_b[j]) / tau) for j in range(n)]
        for j in range(n):
            assert p_ins[i, j].item() == pytest.approx(row[j] / sum(row), rel=1e-10)


def test_instance_contrast_limit_identical_positives_orthogonal_negatives():
    n = 4
    z = torch.eye(8, dtype=torch.float64)[:n]  # video i: A = B = e_i, orthogonal to the rest
    previous = float("inf")
    for tau in (1.0, 0.3, 0.1, 0.05, 0.02):
        loss, acc, _ = instance_contrast(z, z.clone(), tau)
        # closed form: -log(e^{1/tau} / (e^{1/tau} + (2n - 2) e^0))
        assert loss.item() == pytest.approx(math.log1p((2 * n - 2) * math.exp(-1 / tau)), rel=1e-9)
        assert loss.item() < previous and acc.item() == 1.0
        previous = loss.item()
    assert previous < 1e-18  # the minimum, 0, as tau -> 0


def test_instance_contrast_gradient_matches_float64_autograd_of_loops():
    z_a = unit(3, 4, seed=3).requires_grad_(True)
    z_b = unit(3, 4, seed=4)
    loss, _, _ = instance_contrast(z_a, z_b, 0.2)
    loss.backward()
    # finite differences of the loop reference
    eps = 1e-6
    for i in range(3):
        for c in range(4):
            plus, minus = z_a.detach().clone(), z_a.detach().clone()
            plus[i, c] += eps
            minus[i, c] -= eps
            numeric = (brute_info_nce(plus, z_b, 0.2)[0] - brute_info_nce(minus, z_b, 0.2)[0]) / (2 * eps)
            assert z_a.grad[i, c].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_motion_contrast_matches_loops_and_uses_reversed_negatives():
    z_a, z_b, rev_a, rev_b = (unit(4, 6, seed=s) for s in range(10, 14))
    loss, acc = motion_contrast(z_a, z_b, rev_a, rev_b, tau=0.1)
    ref_loss, ref_acc = brute_info_nce(z_a, z_b, 0.1, rev_a, rev_b)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-10)
    assert acc.item() == pytest.approx(ref_acc)

    # without reversed clips it is the instance contrast
    plain, _ = motion_contrast(z_a, z_b, tau=0.1)
    assert plain.item() == pytest.approx(instance_contrast(z_a, z_b, 0.1)[0].item(), rel=1e-12)
    assert plain.item() < loss.item()  # extra negatives only add to the denominator

    # changing the reversed embedding changes the loss
    other, _ = motion_contrast(z_a, z_b, unit(4, 6, seed=20), rev_b, tau=0.1)
    assert other.item() != pytest.approx(loss.item(), rel=1e-6)

    # reversed clips identical to the positives (motion-blind features): the loss rises
    orthogonal = torch.eye(8, dtype=torch.float64)
    z = orthogonal[:4]
    far = -z  # reversed clip far from every anchor of its video
    easy, _ = motion_contrast(z, z.clone(), far, far.clone(), tau=0.1)
    hard, hard_acc = motion_contrast(z, z.clone(), z.clone(), z.clone(), tau=0.1)
    assert hard.item() > easy.item() + 0.5
    assert hard.item() == pytest.approx(brute_info_nce(z, z, 0.1, z, z)[0], rel=1e-10)
    assert hard_acc.item() == 0.0  # a tie with the reversed copy is not a hit


@pytest.mark.parametrize("source", ["both", "positive", "anchor"])
def test_motion_contrast_reversed_negative_source_matches_loops(source):
    z_a, z_b, rev_a, rev_b = (unit(4, 6, seed=s) for s in range(30, 34))
    loss, acc = motion_contrast(z_a, z_b, rev_a, rev_b, tau=0.1, source=source)
    ref_loss, ref_acc = brute_info_nce(z_a, z_b, 0.1, rev_a, rev_b, source=source)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-10)
    assert acc.item() == pytest.approx(ref_acc)


def test_reversed_positive_ignores_the_anchors_own_reversal():
    # Clip A's reversal identical to A (it kept A's colours: a motion-blind encoder), B's
    # reversal far from everything. The reference ("both") gives every anchor rev(A), a
    # tie it cannot win; with source="positive" anchor A meets only rev(B) (far) and
    # anchor B only rev(A).
    z = torch.eye(8, dtype=torch.float64)[:4]
    far = -z
    both, both_acc = motion_contrast(z, z.clone(), z.clone(), far, tau=0.1, source="both")
    positive, positive_acc = motion_contrast(z, z.clone(), z.clone(), far, tau=0.1, source="positive")
    anchor, _ = motion_contrast(z, z.clone(), z.clone(), far, tau=0.1, source="anchor")
    assert both_acc.item() == 0.0 and positive_acc.item() == 0.5
    assert positive.item() == pytest.approx(anchor.item())  # A, B swap roles: same total
    assert both.item() > positive.item()
    with pytest.raises(ValueError, match="source"):
        motion_contrast(z, z, z, z, source="other")


def test_motion_contrast_gradient_reaches_reversed_embeddings():
    z_a, z_b = unit(3, 5, seed=1), unit(3, 5, seed=2)
    rev_a = unit(3, 5, seed=3).requires_grad_(True)
    loss, _ = motion_contrast(z_a, z_b, rev_a, unit(3, 5, seed=4), tau=0.1)
    loss.backward()
    assert rev_a.grad.abs().sum() > 0


def brute_timestamp(fine_a, fine_b, fine_g, tau):
    b, t, _ = fine_a.shape
    total, hits, count = 0.0, 0, 0
    for v in range(b):
        local = []
        for clip in (fine_a[v], fine_b[v]):
            for s in range(t // 2):
                pooled = [(float(x) + float(y)) / 2 for x, y in zip(clip[2 * s], clip[2 * s + 1])]
                norm = math.sqrt(sum(p * p for p in pooled))
                local.append([p / norm for p in pooled])
        sim = [[dot(local[i], fine_g[v, j]) / tau for j in range(t)] for i in range(t)]
        for i in range(t):
            row = sim[i]  # local step i -> G's steps
            col = [sim[j][i] for j in range(t)]  # G's step i -> local steps
            for scores in (row, col):
                total += -scores[i] + math.log(sum(math.exp(s) for s in scores))
                hits += max(range(t), key=lambda j: scores[j]) == i
                count += 1
    return total / count, hits / count


@pytest.mark.parametrize("t", [2, 4, 8])
def test_timestamp_matching_matches_loops(t):
    fine_a, fine_b, fine_g = (unit(3, t, 5, seed=s) for s in (1, 2, 3))
    loss, acc = timestamp_matching(fine_a, fine_b, fine_g, tau=0.07)
    ref_loss, ref_acc = brute_timestamp(fine_a, fine_b, fine_g, 0.07)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-10)
    assert acc.item() == pytest.approx(ref_acc)


def test_timestamp_matching_is_minimal_when_local_steps_equal_global_steps():
    t = 4
    steps = torch.eye(t, dtype=torch.float64)  # G's step j = e_j
    fine_g = steps[None]  # (1, t, C=t)
    # A covers G's steps 0, 1 and B covers 2, 3: each pooled pair must equal that step
    fine_a = steps[[0, 0, 1, 1]][None]
    fine_b = steps[[2, 2, 3, 3]][None]
    loss, acc = timestamp_matching(fine_a, fine_b, fine_g, tau=0.01)
    assert acc.item() == 1.0 and loss.item() < 1e-30
    swapped, swapped_acc = timestamp_matching(fine_b, fine_a, fine_g, tau=0.01)
    assert swapped_acc.item() == 0.0 and swapped.item() == pytest.approx(100, rel=1e-9)  # 1/tau


def test_timestamp_matching_rejects_odd_steps():
    x = unit(2, 3, 4)
    with pytest.raises(ValueError, match="even"):
        timestamp_matching(x, x, x)
