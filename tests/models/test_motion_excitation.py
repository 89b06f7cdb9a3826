"""Motion excitation against a frame-by-frame float64 reference, and its limits."""

import pytest
import torch
import torch.nn.functional as F

from mlfo.models.motion_excitation import MotionExcitation


def randomize_batchnorm(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Non-trivial running statistics and affine terms, so eval-mode BN matters."""
    for bn in (module.squeeze_bn, module.expand_bn):
        c = bn.num_features
        bn.running_mean.copy_(torch.randn(c, generator=generator) * 0.3)
        bn.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
        bn.weight.data.copy_(torch.rand(c, generator=generator) + 0.5)
        bn.bias.data.copy_(torch.randn(c, generator=generator) * 0.2)


def eval_bn(x: torch.Tensor, bn: torch.nn.BatchNorm3d) -> torch.Tensor:
    """x (C,) or (C, H, W) normalised with ``bn``'s running statistics."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean.view(shape)) * scale.view(shape) + bn.bias.view(shape)


def reference_motion_excitation(me: MotionExcitation, x: torch.Tensor) -> torch.Tensor:
    """TEA's ME written frame by frame (method.md §2), as 2-D ops with loops over N and T."""
    n, c, t = x.shape[:3]
    w_squeeze = me.squeeze.weight[:, :, 0, 0, 0]          # (r, C)
    w_transform = me.transform.weight[:, :, 0]             # (r, 1, 3, 3)
    w_expand = me.expand.weight[:, :, 0, 0, 0]            # (C, r)
    out = torch.empty_like(x)
    for i in range(n):
        squeezed = [eval_bn(torch.einsum("rc,chw->rhw", w_squeeze, x[i, :, k]), me.squeeze_bn)
                    for k in range(t)]
        for k in range(t):
            if k + 1 < t:
                moved = F.conv2d(squeezed[k + 1][None], w_transform, padding=1,
                                 groups=w_transform.shape[0])[0]
                motion = (moved - squeezed[k]).mean(dim=(1, 2))           # (r,)
            else:
                motion = torch.zeros(w_squeeze.shape[0], dtype=x.dtype)  # zero-padded last step
            gate = torch.sigmoid(eval_bn(w_expand @ motion, me.expand_bn)) - 0.5  # (C,)
            out[i, :, k] = x[i, :, k] + gate[:, None, None] * x[i, :, k]
    return out


@pytest.mark.parametrize("t", [1, 2, 5])
def test_matches_frame_by_frame_reference(t):
    generator = torch.Generator().manual_seed(t)
    me = MotionExcitation(32).double().eval()
    with torch.no_grad():
        randomize_batchnorm(me, generator)
        x = torch.randn(2, 32, t, 5, 6, generator=generator, dtype=torch.float64)
        out = me(x)
        expected = reference_motion_excitation(me, x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, x)


def test_reduction_sets_the_squeezed_width():
    me = MotionExcitation(256, reduction=16)
    assert me.squeeze.out_channels == 16 and me.expand.out_channels == 256
    assert MotionExcitation(8, reduction=16).squeeze.out_channels == 1


def test_static_input_with_identity_transform_has_no_motion():
    """No change over time and an identity frame transform: the difference is zero, so
    gate = sigmoid(BN(expand(0))) - 0.5, which is 0 with BN at its initial state."""
    torch.manual_seed(0)
    me = MotionExcitation(32).eval()
    with torch.no_grad():
        me.transform.weight.zero_()
        me.transform.weight[:, :, 0, 1, 1] = 1.0           # centre tap: identity
        frame = torch.randn(2, 32, 1, 6, 6)
        static = frame.expand(-1, -1, 4, -1, -1).contiguous()
        torch.testing.assert_close(me(static), static)

        generator = torch.Generator().manual_seed(1)
        randomize_batchnorm(me, generator)
        bn = me.expand_bn
        expected_gate = torch.sigmoid(eval_bn(torch.zeros(32), bn)) - 0.5
        gate = me.gate(static)
        assert gate.shape == (2, 32, 4, 1, 1)
        torch.testing.assert_close(gate, expected_gate.view(1, 32, 1, 1, 1).expand_as(gate))

        moving = static.clone()
        moving[:, :, 2:] += torch.randn(1, 32, 1, 1, 1)  # the last frames change
        assert not torch.allclose(me.gate(moving), gate)


def test_sensitive_to_temporal_order():
    torch.manual_seed(0)
    me = MotionExcitation(32).eval()
    with torch.no_grad():
        randomize_batchnorm(me, torch.Generator().manual_seed(0))
        x = torch.randn(2, 32, 6, 5, 5)
        forward, backward = me(x), me(x.flip(2)).flip(2)
    assert (forward - backward).abs().max() > 1e-3


def test_gate_is_bounded_and_gradients_reach_every_parameter():
    torch.manual_seed(0)
    me = MotionExcitation(32).train()
    x = (torch.randn(3, 32, 4, 5, 5) * 10).requires_grad_()
    gate = me.gate(x)
    assert gate.abs().max() < 0.5
    (me(x) * torch.randn(3, 32, 4, 5, 5)).sum().backward()
    for name, parameter in me.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_channels_last_3d_input():
    torch.manual_seed(0)
    me = MotionExcitation(32).eval()
    x = torch.randn(2, 32, 4, 5, 5)
    with torch.no_grad():
        expected = me(x)
        me = me.to(memory_format=torch.channels_last_3d)
        got = me(x.contiguous(memory_format=torch.channels_last_3d))
    torch.testing.assert_close(got, expected)
