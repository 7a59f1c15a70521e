"""Convolution kernels against a direct NumPy reference and finite differences.

The reference computes the convolution tap by tap on an explicitly padded input (one einsum
per tap and group), which shares nothing with the kernels' im2col or direct loops; its
backward is the adjoint of the same tap-by-tap sum.  Activation gradients come from finite
differences of the activation reference, and separate tests check the reference backward and
the kernels themselves against finite differences of a forward pass.
"""
import numpy as np
import pytest

from nnjit.kernels.activations import CODES
from nnjit.kernels.conv import (DIRECT_MAX_TAPS, WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_GRAD_CHANNELS, col2im,
                                conv2d_backward, conv2d_forward, im2col)

from test_activation_kernels import reference


# ---------------------------------------------------------------- NumPy reference


def _geometry(h, w, kh, kw, stride, dilation, padding):
    """(pad_top, pad_left, out_h, out_w) for padding "valid", "same" (TensorFlow's rule: the odd
    extra row or column goes at the bottom/right) or an int (the same on every side)."""
    sh, sw = stride
    dh, dw = dilation
    if padding == "valid":
        return 0, 0, (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    if padding == "same":
        out_h, out_w = -(-h // sh), -(-w // sw)
        total_h = max((out_h - 1) * sh + dh * (kh - 1) + 1 - h, 0)
        total_w = max((out_w - 1) * sw + dw * (kw - 1) + 1 - w, 0)
        return total_h // 2, total_w // 2, out_h, out_w
    p = int(padding)
    return p, p, (h + 2 * p - dh * (kh - 1) - 1) // sh + 1, (w + 2 * p - dw * (kw - 1) - 1) // sw + 1


def _padded(x, pad_top, pad_left, out_h, out_w, kh, kw, stride, dilation):
    n, c, h, w = x.shape
    rows = max(pad_top + h, (out_h - 1) * stride[0] + dilation[0] * (kh - 1) + 1)
    cols = max(pad_left + w, (out_w - 1) * stride[1] + dilation[1] * (kw - 1) + 1)
    xp = np.zeros((n, c, rows, cols), dtype=np.float64)
    xp[:, :, pad_top:pad_top + h, pad_left:pad_left + w] = x
    return xp


def _tap(i, j, out_h, out_w, stride, dilation):
    """Index of the padded input that tap (i, j) reads for every output pixel."""
    r = i * dilation[0]
    c = j * dilation[1]
    return (slice(None), slice(None),
            slice(r, r + (out_h - 1) * stride[0] + 1, stride[0]),
            slice(c, c + (out_w - 1) * stride[1] + 1, stride[1]))


def conv_reference(x, w, b, stride, pad_top, pad_left, out_h, out_w, dilation, groups):
    """Pre-activation conv(x, w) + b, summed tap by tap over an explicitly padded input."""
    f, cg, kh, kw = w.shape
    fg = f // groups
    xp = _padded(x, pad_top, pad_left, out_h, out_w, kh, kw, stride, dilation)
    y = np.zeros((x.shape[0], f, out_h, out_w))
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = xp[_tap(i, j, out_h, out_w, stride, dilation)][:, g * cg:(g + 1) * cg]
                y[:, g * fg:(g + 1) * fg] += np.einsum("nchw,fc->nfhw", patch, w[g * fg:(g + 1) * fg, :, i, j])
    if b is not None:
        y += b[None, :, None, None]
    return y


def conv_reference_backward(dz, x, w, stride, pad_top, pad_left, dilation, groups):
    """(dx, dw, db) of the tap-by-tap sum above for the pre-activation gradient dz."""
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    fg = f // groups
    out_h, out_w = dz.shape[2:]
    xp = _padded(x, pad_top, pad_left, out_h, out_w, kh, kw, stride, dilation)
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    for g in range(groups):
        dzg = dz[:, g * fg:(g + 1) * fg]
        for i in range(kh):
            for j in range(kw):
                tap = _tap(i, j, out_h, out_w, stride, dilation)
                dw[g * fg:(g + 1) * fg, :, i, j] = np.einsum("nfhw,nchw->fc", dzg, xp[tap][:, g * cg:(g + 1) * cg])
                dxp[tap][:, g * cg:(g + 1) * cg] += np.einsum("nfhw,fc->nchw", dzg, w[g * fg:(g + 1) * fg, :, i, j])
    return dxp[:, :, pad_top:pad_top + h, pad_left:pad_left + wd], dw, dz.sum(axis=(0, 2, 3))


def activation_reference(name, pre):
    """Activation of an NCHW pre-activation; softmax is over the channel axis."""
    moved = np.moveaxis(pre, 1, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    return np.moveaxis(reference(name, flat).reshape(moved.shape), -1, 1)


def activation_vjp(name, pre, dy, eps=1e-6):
    """dy pulled back through the activation by central differences, one channel at a time
    (pixels are independent, so perturbing a whole channel gives one Jacobian column each).
    For the piecewise-linear activations the step stays below the distance to the kink at 0,
    where the difference is exact.  (Outputs that read only padding are exactly 0 without a
    bias; their dz reaches neither dx nor dw, and db is not checked then.)"""
    if name in ("relu", "leaky_relu"):
        eps = min(eps, 0.5 * float(np.abs(pre[pre != 0]).min()))
    dz = np.empty_like(pre)
    for k in range(pre.shape[1]):
        e = np.zeros_like(pre)
        e[:, k] = eps
        col = (activation_reference(name, pre + e) - activation_reference(name, pre - e)) / (2 * eps)
        dz[:, k] = np.sum(col * dy, axis=1)
    return dz


# ---------------------------------------------------------------- helpers


def _problem(n, c, h, w, f, cg, kh, kw, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = (rng.standard_normal((f, cg, kh, kw)) / np.sqrt(cg * kh * kw)).astype(dtype)
    b = rng.standard_normal(f).astype(dtype)
    return x, wt, b


def _run(x, w, b, stride, dilation, geometry, groups, code, nblocks):
    pad_top, pad_left, out_h, out_w = geometry
    return conv2d_forward(x, w, b, stride[0], stride[1], pad_top, pad_left, out_h, out_w,
                          dilation[0], dilation[1], groups, code, nblocks)


def _run_backward(dy, x, w, y, z, stride, dilation, geometry, groups, code, dw, db, need_dx, need_dw, nblocks):
    pad_top, pad_left = geometry[:2]
    return conv2d_backward(dy, x, w, y, z, stride[0], stride[1], pad_top, pad_left, dilation[0], dilation[1],
                           groups, code, dw, db, need_dx, need_dw, nblocks)


def _check_case(x, w, b, stride, dilation, padding, groups, name, nblocks, use_bias, tol=1e-11, seed=1):
    """Forward against the reference; backward (dx, dw, db accumulated onto non-zero values)
    against the reference adjoint of the finite-difference activation gradient."""
    n, c, h, wd = x.shape
    f, cg, kh, kw = w.shape
    geometry = _geometry(h, wd, kh, kw, stride, dilation, padding)
    pad_top, pad_left, out_h, out_w = geometry
    code = CODES[name]
    bias = b if use_bias else np.empty(0, dtype=x.dtype)
    y, z = _run(x, w, bias, stride, dilation, geometry, groups, code, nblocks)
    pre = conv_reference(x, w, b if use_bias else None, stride, pad_top, pad_left, out_h, out_w, dilation, groups)
    assert y.shape == (n, f, out_h, out_w) and y.dtype == x.dtype
    np.testing.assert_allclose(y, activation_reference(name, pre), rtol=tol, atol=tol)
    if name in ("gelu", "swish"):
        np.testing.assert_allclose(z, pre, rtol=tol, atol=tol)
    else:
        assert z.shape[0] == 0

    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(x.dtype)
    dw = np.full_like(w, 0.5)  # gradients accumulate: start from non-zero values
    db = np.full_like(bias, -0.25)
    dx = _run_backward(dy, x, w, y, z, stride, dilation, geometry, groups, code, dw, db, True, True, nblocks)
    dz = activation_vjp(name, pre, dy)
    dx_ref, dw_ref, db_ref = conv_reference_backward(dz, x, w, stride, pad_top, pad_left, dilation, groups)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, 0.5 + dw_ref, rtol=1e-6, atol=1e-8)
    if use_bias:
        np.testing.assert_allclose(db, -0.25 + db_ref, rtol=1e-6, atol=1e-8)
    else:
        assert db.shape == (0,)


# (groups, C, F): channel counts chosen so that both the im2col + GEMM path and the direct
# path (at most DIRECT_MAX_TAPS taps per output) run ungrouped and grouped for the 3x2 and
# 3x3 kernels below; "depthwise" is groups == C (with two filters per channel).
_MANY = DIRECT_MAX_TAPS // 6 + 1  # channels per group that make a 3x2 kernel take the GEMM path
CHANNELS = {
    "gemm": (1, _MANY, 5),
    "direct": (1, 1, 3),
    "groups2-gemm": (2, 2 * _MANY, 4),
    "groups2-direct": (2, 4, 6),
    "depthwise": (4, 4, 8),
}
# 3x3 stride-1 ungrouped convolutions with enough channels take Winograd: forward only, or
# forward and input gradient.
WINOGRAD = {
    "winograd": (1, WINOGRAD_MIN_CHANNELS, WINOGRAD_MIN_CHANNELS + 1),
    "winograd-grad": (1, WINOGRAD_MIN_GRAD_CHANNELS, WINOGRAD_MIN_CHANNELS),
}


@pytest.mark.parametrize("channels", sorted(CHANNELS))
@pytest.mark.parametrize("dilation", [(1, 1), (2, 2)])
@pytest.mark.parametrize("padding", ["valid", "same", 2])
@pytest.mark.parametrize("stride", [(1, 1), (2, 2), (2, 1)])
def test_forward_backward_match_reference(stride, padding, dilation, channels):
    """Every stride, padding, dilation and grouping on an odd, non-square 7x9 input with a 3x2
    kernel; inside: bias or not, four activations, serial and two blocks (3 images)."""
    groups, c, f = CHANNELS[channels]
    x, w, b = _problem(3, c, 7, 9, f, c // groups, 3, 2, seed=len(channels))
    for use_bias in (True, False):
        for name in ("linear", "relu", "gelu", "softmax"):
            for nblocks in (1, 2):
                _check_case(x, w, b, stride, dilation, padding, groups, name, nblocks, use_bias)


@pytest.mark.parametrize("channels", sorted(CHANNELS) + sorted(WINOGRAD))
@pytest.mark.parametrize("dilation", [(1, 1), (2, 2), (1, 2)])
@pytest.mark.parametrize("padding", ["valid", "same", 2, 3])
def test_3x3_stride_1(padding, dilation, channels):
    """The common 3x3 stride-1 case: nine taps per pass on the direct path, Winograd for many
    channels (without dilation), on an 8x7 input (partial 2x2 tiles at the edge) and an 8x6
    one (whole tiles: Winograd writes the output directly)."""
    groups, c, f = {**CHANNELS, **WINOGRAD}[channels]
    for width in (7, 6):
        x, w, b = _problem(3, c, 8, width, f, c // groups, 3, 3, seed=5)
        for nblocks in (1, 2):
            _check_case(x, w, b, (1, 1), dilation, padding, groups, "relu", nblocks, True)
            _check_case(x, w, b, (1, 1), dilation, padding, groups, "gelu", nblocks, False)


@pytest.mark.parametrize("name", sorted(CODES))
@pytest.mark.parametrize("channels", ["gemm", "direct", "winograd"])
def test_every_activation(name, channels):
    groups, c, f = {**CHANNELS, **WINOGRAD}[channels]
    x, w, b = _problem(2, c, 6, 5, f, c // groups, 3, 3, seed=7)
    _check_case(x, w, b, (1, 1), (1, 1), "same", groups, name, 2, True)


@pytest.mark.parametrize("kernel", [(1, 1), (2, 3), (5, 5), (1, 4)])
@pytest.mark.parametrize("stride", [(1, 1), (2, 2)])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_kernel_shapes(kernel, stride, padding):
    """1x1 with stride 1 and no padding is a plain GEMM on the image (no im2col); the others
    take im2col (5x5 over 3 channels) or the direct path (1x4 over one channel)."""
    kh, kw = kernel
    c = 1 if kernel == (1, 4) else 3
    x, w, b = _problem(3, c, 11, 8, 4, c, kh, kw, seed=kh * 10 + kw)
    for nblocks in (1, 2):
        _check_case(x, w, b, stride, (1, 1), padding, 1, "relu", nblocks, True)


@pytest.mark.parametrize("channels", ["gemm", "direct", "depthwise", "winograd-grad"])
def test_large_images_one_per_gemm(channels):
    """Outputs of 20x24 pixels: one image per GEMM (no side-by-side images), several per block."""
    groups, c, f = {**CHANNELS, **WINOGRAD}[channels]
    x, w, b = _problem(5, c, 20, 24, f, c // groups, 3, 3, seed=3)
    for nblocks in (1, 2, 3):
        _check_case(x, w, b, (1, 1), (1, 1), "same", groups, "relu", nblocks, True)


@pytest.mark.parametrize("c, f, groups", [(16, 40, 1), (40, 24, 1), (16, 40, 2), (3, 32, 1), (24, 24, 24)])
def test_float32(c, f, groups):
    """float32 on Winograd (forward only, and with the input gradient), im2col + GEMM
    (grouped), direct (27 taps) and depthwise shapes, against float64."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((9, c, 17, 15)).astype(np.float32)
    w = (rng.standard_normal((f, c // groups, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    geometry = _geometry(17, 15, 3, 3, (1, 1), (1, 1), "same")
    code = CODES["relu"]
    y, z = _run(x, w, b, (1, 1), (1, 1), geometry, groups, code, 2)
    assert y.dtype == np.float32
    pre = conv_reference(x.astype(np.float64), w.astype(np.float64), b, (1, 1), *geometry, (1, 1), groups)
    np.testing.assert_allclose(y, np.maximum(pre, 0), rtol=1e-4, atol=1e-4)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dw = np.zeros_like(w)
    db = np.zeros_like(b)
    dx = _run_backward(dy, x, w, y, z, (1, 1), (1, 1), geometry, groups, code, dw, db, True, True, 2)
    assert dx.dtype == dw.dtype == np.float32
    dz = np.where(pre > 0, dy.astype(np.float64), 0.0)
    dx_ref, dw_ref, db_ref = conv_reference_backward(dz, x.astype(np.float64), w.astype(np.float64), (1, 1),
                                                     geometry[0], geometry[1], (1, 1), groups)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(db, db_ref, rtol=1e-3, atol=1e-3)


def test_reference_backward_finite_differences():
    """The NumPy reference backward against central differences of the reference forward."""
    x, w, b = _problem(2, 4, 5, 6, 4, 2, 3, 2, seed=12)
    stride, dilation, groups = (2, 1), (1, 2), 2
    pad_top, pad_left, out_h, out_w = _geometry(5, 6, 3, 2, stride, dilation, "same")
    R = np.random.default_rng(13).standard_normal((2, 4, out_h, out_w))

    def f(x_, w_, b_):
        return float(np.sum(conv_reference(x_, w_, b_, stride, pad_top, pad_left, out_h, out_w, dilation, groups) * R))

    dx, dw, db = conv_reference_backward(R, x, w, stride, pad_top, pad_left, dilation, groups)
    _assert_finite_differences(f, (x, w, b), (dx, dw, db))


def _assert_finite_differences(f, arrays, grads, eps=1e-6):
    for array, grad in zip(arrays, grads):
        numeric = np.empty_like(array)
        for idx in np.ndindex(array.shape):
            old = array[idx]
            array[idx] = old + eps
            up = f(*arrays)
            array[idx] = old - eps
            down = f(*arrays)
            array[idx] = old
            numeric[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("channels", ["gemm", "depthwise"])
def test_backward_finite_differences_of_kernel(channels):
    """Gradient of sum(conv2d_forward(x) * R) by central differences of the kernel itself."""
    groups, c, f_ = CHANNELS[channels]
    x, w, b = _problem(2, c, 5, 4, f_, c // groups, 2, 3, seed=14)
    stride, dilation = (1, 2), (2, 1)
    geometry = _geometry(5, 4, 2, 3, stride, dilation, "same")
    code = CODES["tanh"]
    y, z = _run(x, w, b, stride, dilation, geometry, groups, code, 2)
    R = np.random.default_rng(15).standard_normal(y.shape)
    dw = np.zeros_like(w)
    db = np.zeros_like(b)
    dx = _run_backward(R, x, w, y, z, stride, dilation, geometry, groups, code, dw, db, True, True, 2)

    def f(x_, w_, b_):
        return float(np.sum(_run(x_, w_, b_, stride, dilation, geometry, groups, code, 1)[0] * R))

    _assert_finite_differences(f, (x, w, b), (dx, dw, db))


@pytest.mark.parametrize("channels", ["gemm", "direct"])
def test_backward_flags_skip_work(channels):
    groups, c, f = CHANNELS[channels]
    x, w, b = _problem(4, c, 6, 6, f, c // groups, 3, 3)
    geometry = _geometry(6, 6, 3, 3, (1, 1), (1, 1), "same")
    code = CODES["relu"]
    y, z = _run(x, w, b, (1, 1), (1, 1), geometry, groups, code, 2)
    dy = np.ones_like(y)
    for nblocks in (1, 2):
        dw = np.zeros_like(w)
        db = np.zeros_like(b)
        dx = _run_backward(dy, x, w, y, z, (1, 1), (1, 1), geometry, groups, code, dw, db, False, False, nblocks)
        assert dx.shape == (0, c, 6, 6)
        assert not dw.any() and not db.any()
        # Only the weights (the first layer of a model) and only the input (a frozen layer).
        dx = _run_backward(dy, x, w, y, z, (1, 1), (1, 1), geometry, groups, code, dw, db, False, True, nblocks)
        assert dx.shape[0] == 0 and dw.any() and db.any()
        dw2 = np.zeros_like(w)
        db2 = np.zeros_like(b)
        dx = _run_backward(dy, x, w, y, z, (1, 1), (1, 1), geometry, groups, code, dw2, db2, True, False, nblocks)
        assert dx.shape == x.shape and dx.any()
        assert not dw2.any() and not db2.any()


@pytest.mark.parametrize("c", [5, 2])
def test_serial_and_parallel_paths_agree(c):
    x, w, b = _problem(7, c, 9, 10, 6, c, 3, 3, seed=9)
    geometry = _geometry(9, 10, 3, 3, (1, 1), (1, 1), "same")
    code = CODES["gelu"]
    outs = []
    for nb in (1, 2, 7, 20):
        y, z = _run(x, w, b, (1, 1), (1, 1), geometry, 1, code, nb)
        dw = np.zeros_like(w)
        db = np.zeros_like(b)
        dx = _run_backward(np.cos(y), x, w, y, z, (1, 1), (1, 1), geometry, 1, code, dw, db, True, True, nb)
        outs.append((y, dx, dw, db))
    for other in outs[1:]:
        for a, c in zip(outs[0], other):
            np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)


def test_im2col_layout_and_col2im_adjoint():
    """im2col rows are (channel, tap row, tap column), columns (image, pixel); col2im is its
    adjoint: <im2col(x), g> == <x, col2im(g)>."""
    rng = np.random.default_rng(16)
    x = rng.standard_normal((3, 2, 5, 7))
    kh, kw, sh, sw, pt, pl, oh, ow, dh, dw = 2, 3, 2, 1, 1, 0, 3, 6, 1, 1
    cols = np.empty((2 * kh * kw, 2 * oh * ow))
    im2col(x, 1, 3, kh, kw, sh, sw, pt, pl, oh, ow, dh, dw, cols)
    xp = np.pad(x, ((0, 0), (0, 0), (pt, 4), (pl, 4)))
    for n in (1, 2):
        for c in range(2):
            for i in range(kh):
                for j in range(kw):
                    expect = xp[n, c, i:i + (oh - 1) * sh + 1:sh, j:j + ow][:, :ow]
                    got = cols[(c * kh + i) * kw + j, (n - 1) * oh * ow:n * oh * ow].reshape(oh, ow)
                    np.testing.assert_array_equal(got, expect)
    g = rng.standard_normal(cols.shape)
    dx = np.zeros_like(x)
    col2im(g, 1, 3, kh, kw, sh, sw, pt, pl, oh, ow, dh, dw, dx)
    assert not dx[0].any()
    np.testing.assert_allclose(np.sum(cols * g), np.sum(x * dx), rtol=1e-12)


def test_matches_torch():
    """Optional cross-check against PyTorch's convolution (asymmetric padding done by F.pad)."""
    torch = pytest.importorskip("torch")
    x, w, b = _problem(3, 6, 9, 8, 4, 3, 3, 2, seed=17)
    stride, dilation, groups = (2, 1), (1, 2), 2
    geometry = _geometry(9, 8, 3, 2, stride, dilation, "same")
    pad_top, pad_left, out_h, out_w = geometry
    y, _ = _run(x, w, b, stride, dilation, geometry, groups, CODES["linear"], 2)
    bottom = (out_h - 1) * stride[0] + dilation[0] * 2 + 1 - 9 - pad_top
    right = (out_w - 1) * stride[1] + dilation[1] * 1 + 1 - 8 - pad_left
    xt = torch.nn.functional.pad(torch.from_numpy(x), (pad_left, right, pad_top, bottom))
    yt = torch.nn.functional.conv2d(xt, torch.from_numpy(w), torch.from_numpy(b), stride=stride,
                                    dilation=dilation, groups=groups)
    np.testing.assert_allclose(y, yt.numpy(), rtol=1e-10, atol=1e-10)
