"""Optimizers over flat buffers against independent NumPy implementations of the
published rules (Keras 3's; Adam/AdamW in the paper's and PyTorch's epsilon placement, as
the API contract says), against torch.optim where the rules coincide, plus ranges,
clipping, schedules, state and argument checking."""
import math

import numpy as np
import pytest

from nnjit import optimizers, runtime
from nnjit.optimizers import SGD, Adam, AdamW, RMSprop, schedules

DTYPES = [np.float32, np.float64]
STEPS = 6


@pytest.fixture(params=[1, 2], ids=["serial", "parallel"])
def nblocks(request, monkeypatch):
    """Force the serial path (1 block) or the parallel path (2 blocks) on small buffers."""
    monkeypatch.setattr(runtime, "blocks_for", lambda work, *_: request.param)
    return request.param


def _tol(dtype):
    return dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)


def _problem(dtype, size=37, steps=STEPS, seed=0):
    rng = np.random.default_rng(seed)
    params = rng.standard_normal(size).astype(dtype)
    grads = [rng.standard_normal(size).astype(dtype) for _ in range(steps)]
    return params, grads


def _run(opt, params, grads, ranges=None):
    params = params.copy()
    for g in grads:
        opt.update(params, g.copy(), ranges)
    return params


# ---------------------------------------------------------- NumPy reference rules
# Written from the published update rules, step by step, in float64; lr(t) is the
# learning rate of step t (t = 0 for the first update).

def ref_sgd(p, grads, lr, momentum=0.0, nesterov=False, weight_decay=None):
    p = p.astype(np.float64)
    v = np.zeros_like(p)
    for t, g in enumerate(grads):
        g = g.astype(np.float64)
        a = lr(t)
        if weight_decay:
            p = p - p * weight_decay * a
        if momentum:
            v = momentum * v - a * g
            p = p + (momentum * v - a * g if nesterov else v)
        else:
            p = p - a * g
    return p


def ref_rmsprop(p, grads, lr, rho=0.9, momentum=0.0, epsilon=1e-7):
    p = p.astype(np.float64)
    v = np.zeros_like(p)
    mom = np.zeros_like(p)
    for t, g in enumerate(grads):
        g = g.astype(np.float64)
        v = rho * v + (1 - rho) * g * g
        increment = lr(t) * g / np.sqrt(v + epsilon)
        if momentum:
            mom = momentum * mom + increment
            p = p - mom
        else:
            p = p - increment
    return p


def ref_adam(p, grads, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0):
    p = p.astype(np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        a = lr(t - 1)
        p = p - a * weight_decay * p
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        m_hat = m / (1 - beta_1 ** t)
        v_hat = v / (1 - beta_2 ** t)
        p = p - a * m_hat / (np.sqrt(v_hat) + epsilon)
    return p


def const(x):
    return lambda t: x


CASES = [
    ("sgd", lambda: SGD(0.05), lambda p, gs: ref_sgd(p, gs, const(0.05))),
    ("sgd-momentum", lambda: SGD(0.05, momentum=0.9),
     lambda p, gs: ref_sgd(p, gs, const(0.05), 0.9)),
    ("sgd-nesterov", lambda: SGD(0.05, momentum=0.8, nesterov=True),
     lambda p, gs: ref_sgd(p, gs, const(0.05), 0.8, True)),
    ("sgd-weight-decay", lambda: SGD(0.05, momentum=0.5, weight_decay=0.1),
     lambda p, gs: ref_sgd(p, gs, const(0.05), 0.5, False, 0.1)),
    ("rmsprop", lambda: RMSprop(0.01), lambda p, gs: ref_rmsprop(p, gs, const(0.01))),
    ("rmsprop-momentum", lambda: RMSprop(0.01, rho=0.8, momentum=0.7, epsilon=1e-6),
     lambda p, gs: ref_rmsprop(p, gs, const(0.01), 0.8, 0.7, 1e-6)),
    ("adam", lambda: Adam(0.01), lambda p, gs: ref_adam(p, gs, const(0.01))),
    ("adam-betas", lambda: Adam(0.02, beta_1=0.5, beta_2=0.9, epsilon=1e-3),
     lambda p, gs: ref_adam(p, gs, const(0.02), 0.5, 0.9, 1e-3)),
    ("adamw", lambda: AdamW(0.01, weight_decay=0.1),
     lambda p, gs: ref_adam(p, gs, const(0.01), weight_decay=0.1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make,reference", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_matches_numpy_reference(make, reference, dtype, nblocks):
    params, grads = _problem(dtype)
    opt = make()
    got = _run(opt, params, grads)
    assert got.dtype == dtype
    assert opt.iterations == STEPS
    np.testing.assert_allclose(got, reference(params, grads), **_tol(dtype))


@pytest.mark.parametrize("make,reference", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_on_a_buffer_large_enough_for_the_real_parallel_path(make, reference):
    size = runtime.PARALLEL_MIN_WORK + 1001
    params, grads = _problem(np.float32, size=size, steps=3)
    got = _run(make(), params, grads)
    np.testing.assert_allclose(got, reference(params, grads), rtol=5e-5, atol=5e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_schedule_and_callable_learning_rates(dtype, nblocks):
    params, grads = _problem(dtype)
    decay = schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    got = _run(SGD(decay, momentum=0.9), params, grads)
    np.testing.assert_allclose(got, ref_sgd(params, grads, decay, 0.9), **_tol(dtype))

    def fn(step):
        return 0.01 / (1 + step)

    got = _run(Adam(fn), params, grads)
    np.testing.assert_allclose(got, ref_adam(params, grads, fn), **_tol(dtype))
    cosine = schedules.CosineDecay(0.01, decay_steps=4, alpha=0.1)
    got = _run(AdamW(cosine, weight_decay=0.2), params, grads)
    np.testing.assert_allclose(got, ref_adam(params, grads, cosine, weight_decay=0.2), **_tol(dtype))


def test_current_learning_rate_follows_iterations():
    opt = SGD(schedules.ExponentialDecay(1.0, 1, 0.5))
    assert opt.current_learning_rate() == 1.0
    p = np.zeros(3)
    opt.update(p, np.ones(3))
    assert opt.current_learning_rate() == 0.5
    opt.learning_rate = 0.25   # callbacks set the attribute
    assert opt.learning_rate == 0.25 and opt.current_learning_rate() == 0.25


# ------------------------------------------------------------------ torch.optim

def _torch_run(torch_opt_cls, params, grads, **kwargs):
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.tensor(params))
    opt = torch_opt_cls([w], **kwargs)
    for g in grads:
        w.grad = torch.tensor(g)
        opt.step()
    return w.detach().numpy()


# Where the rules coincide exactly (constant learning rate):
# - Adam, AdamW: PyTorch's epsilon placement m_hat / (sqrt(v_hat) + eps) is the one nnjit
#   uses; both AdamWs decay p by (1 - lr * wd) before the Adam step.
# - SGD with momentum / Nesterov: Keras keeps v = momentum * v - lr * g, PyTorch keeps
#   buf = momentum * buf + g and steps by lr * buf; with a constant lr, v = -lr * buf.
#   (Under a changing lr they differ, and PyTorch's weight_decay is coupled L2, Keras'
#   decoupled, so neither is compared.)
# - RMSprop: Keras adds epsilon inside the square root, PyTorch outside, so they agree only
#   with epsilon = 0; momentum coincides for a constant lr as for SGD (Keras folds lr into
#   the buffer, PyTorch multiplies it outside).  The centered variant is not implemented.
TORCH_CASES = [
    ("adam", lambda: Adam(0.01, beta_1=0.8, beta_2=0.99, epsilon=1e-6), "Adam",
     dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ("adamw", lambda: AdamW(0.01, weight_decay=0.3), "AdamW",
     dict(lr=0.01, weight_decay=0.3, eps=1e-7)),
    ("sgd", lambda: SGD(0.05), "SGD", dict(lr=0.05)),
    ("sgd-momentum", lambda: SGD(0.05, momentum=0.9), "SGD", dict(lr=0.05, momentum=0.9)),
    ("sgd-nesterov", lambda: SGD(0.05, momentum=0.9, nesterov=True), "SGD",
     dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("rmsprop", lambda: RMSprop(0.01, rho=0.8, epsilon=0.0), "RMSprop",
     dict(lr=0.01, alpha=0.8, eps=0.0)),
    ("rmsprop-momentum", lambda: RMSprop(0.01, rho=0.9, momentum=0.6, epsilon=0.0), "RMSprop",
     dict(lr=0.01, alpha=0.9, momentum=0.6, eps=0.0)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make,torch_name,kwargs", [c[1:] for c in TORCH_CASES],
                         ids=[c[0] for c in TORCH_CASES])
def test_rule_matches_torch_optim(make, torch_name, kwargs, dtype, nblocks):
    torch = pytest.importorskip("torch")
    params, grads = _problem(dtype)
    expected = _torch_run(getattr(torch.optim, torch_name), params, grads, **kwargs)
    got = _run(make(), params, grads)
    np.testing.assert_allclose(got, expected, **_tol(dtype))


# ------------------------------------------------------------------------ ranges

@pytest.mark.parametrize("make", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_frozen_segments_are_untouched(make, nblocks):
    params, grads = _problem(np.float64, size=60)
    ranges = [(0, 10), (25, 40), (52, 60)]
    opt = make()
    got = _run(opt, params, grads, ranges)
    # Elementwise rules: the trainable segments move exactly as they would alone.
    alone = _run(make(), np.concatenate([params[a:b] for a, b in ranges]),
                 [np.concatenate([g[a:b] for a, b in ranges]) for g in grads])
    np.testing.assert_allclose(np.concatenate([got[a:b] for a, b in ranges]), alone,
                               rtol=1e-14, atol=0)
    for a, b in [(10, 25), (40, 52)]:
        np.testing.assert_array_equal(got[a:b], params[a:b])
        for name, slot in opt.get_state().items():
            if name != "iterations":
                assert not slot[a:b].any()


def test_update_does_not_modify_grads_even_when_clipping():
    params, grads = _problem(np.float32)
    for opt in (Adam(clipnorm=0.1), SGD(clipvalue=0.1)):
        g = grads[0].copy()
        opt.update(params.copy(), g)
        np.testing.assert_array_equal(g, grads[0])


def test_ranges_are_checked():
    opt = SGD()
    p = np.zeros(10)
    with pytest.raises(ValueError, match="Received: range \\(5, 11\\)"):
        opt.update(p, p.copy(), [(5, 11)])
    with pytest.raises(ValueError, match="overlap"):
        opt.update(p, p.copy(), [(0, 5), (4, 8)])
    with pytest.raises(TypeError, match="ranges"):
        opt.update(p, p.copy(), [(0.5, 3)])
    with pytest.raises(ValueError, match="same shape and dtype"):
        opt.update(p, np.zeros(10, np.float32))
    with pytest.raises(TypeError, match="params"):
        opt.update(np.zeros((2, 5)), np.zeros((2, 5)))
    assert opt.iterations == 0
    opt.update(p, p.copy(), [])      # nothing trainable: no change, still a step
    assert opt.iterations == 1


# ---------------------------------------------------------------------- clipping

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("clipnorm", [0.5, 100.0])
def test_clipnorm_uses_the_norm_over_all_ranges(dtype, clipnorm, nblocks):
    params, grads = _problem(dtype, size=50)
    ranges = [(0, 20), (30, 50)]
    got = _run(SGD(0.1, momentum=0.9, clipnorm=clipnorm), params, grads, ranges)
    clipped = []
    for g in grads:
        g = g.astype(np.float64).copy()
        norm = np.sqrt(sum(np.sum(g[a:b] ** 2) for a, b in ranges))
        clipped.append(g * clipnorm / max(norm, clipnorm))
    expected = ref_sgd(params, clipped, const(0.1), 0.9)
    for a, b in ranges:
        np.testing.assert_allclose(got[a:b], expected[a:b], **_tol(dtype))
    np.testing.assert_array_equal(got[20:30], params[20:30])


@pytest.mark.parametrize("dtype", DTYPES)
def test_clipvalue_clips_elementwise(dtype, nblocks):
    params, grads = _problem(dtype)
    got = _run(Adam(0.01, clipvalue=0.3), params, grads)
    expected = ref_adam(params, [np.clip(g.astype(np.float64), -0.3, 0.3) for g in grads], const(0.01))
    np.testing.assert_allclose(got, expected, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_standalone_clipping_functions(dtype, nblocks):
    _, (g,) = _problem(dtype, size=40, steps=1)
    ranges = [(0, 15), (25, 40)]
    inside = np.concatenate([g[a:b] for a, b in ranges]).astype(np.float64)
    assert optimizers.global_norm(g, ranges) == pytest.approx(np.linalg.norm(inside), rel=1e-12)
    assert optimizers.global_norm(g) == pytest.approx(np.linalg.norm(g.astype(np.float64)), rel=1e-12)

    x = g.copy()
    norm = optimizers.clip_by_norm(x, 1.0, ranges)
    assert norm == pytest.approx(np.linalg.norm(inside), rel=1e-12)
    assert optimizers.global_norm(x, ranges) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_array_equal(x[15:25], g[15:25])

    x = g.copy()
    optimizers.clip_by_value(x, 0.2)
    np.testing.assert_array_equal(x, np.clip(g, -0.2, 0.2))
    with pytest.raises(ValueError, match="clipnorm=0"):
        optimizers.clip_by_norm(g, 0)


# --------------------------------------------------------------------- schedules

def test_exponential_decay_values():
    s = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    for step in (0, 1, 5, 10, 25, 1000):
        assert s(step) == pytest.approx(0.1 * 0.5 ** (step / 10), rel=1e-14)
    stair = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert [stair(s_) for s_ in (0, 9, 10, 19, 20)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])


def test_cosine_decay_values():
    s = schedules.CosineDecay(1.0, decay_steps=100, alpha=0.1)
    assert s(0) == pytest.approx(1.0)
    assert s(50) == pytest.approx(0.1 + 0.9 * 0.5)
    assert s(100) == pytest.approx(0.1)
    assert s(500) == pytest.approx(0.1)   # constant after decay_steps
    for step in (3, 17, 71):
        expected = (0.9 * 0.5 * (1 + math.cos(math.pi * step / 100)) + 0.1)
        assert s(step) == pytest.approx(expected, rel=1e-14)
    warm = schedules.CosineDecay(0.0, decay_steps=10, warmup_target=1.0, warmup_steps=5)
    assert [warm(t) for t in (0, 1, 5, 10, 15, 30)] == pytest.approx([0.0, 0.2, 1.0, 0.5, 0.0, 0.0],
                                                                    abs=1e-12)


def test_cosine_decay_matches_torch_cosine_annealing():
    # Keras' CosineDecay with alpha is PyTorch's CosineAnnealingLR with eta_min = alpha * lr0
    # for steps up to decay_steps.
    torch = pytest.importorskip("torch")
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=0.5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=0.05)
    ours = schedules.CosineDecay(0.5, decay_steps=20, alpha=0.1)
    for step in range(21):
        assert ours(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        sched.step()


def test_schedule_config_round_trip():
    for s in (schedules.ExponentialDecay(0.1, 7, 0.9, staircase=True),
              schedules.CosineDecay(0.2, 50, alpha=0.05, warmup_target=0.3, warmup_steps=4)):
        again = schedules.deserialize(s.get_config())
        assert again == s and again(13) == s(13)


@pytest.mark.parametrize("make,match", [
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.5), "decay_steps=0"),
    (lambda: schedules.ExponentialDecay(-0.1, 10, 0.5), "initial_learning_rate=-0.1"),
    (lambda: schedules.ExponentialDecay(0.1, 10, 0.0), "decay_rate=0"),
    (lambda: schedules.CosineDecay(0.1, -5), "decay_steps=-5"),
    (lambda: schedules.CosineDecay(0.1, 5, alpha=2), "alpha=2"),
])
def test_schedule_arguments_are_checked(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_schedule_returning_a_bad_value_is_refused():
    opt = SGD(lambda step: -1.0)
    with pytest.raises(ValueError, match="schedule returned -1.0 at step 0"):
        opt.update(np.zeros(3), np.zeros(3))


# ------------------------------------------------------------------------- state

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_state_round_trip_continues_identically(make, dtype):
    params, grads = _problem(dtype, steps=8)
    a = make()
    p = _run(a, params, grads[:4])
    state = a.get_state()
    assert state["iterations"] == 4
    b = make()
    b.set_state(state)
    assert b.iterations == 4
    pa = _run(a, p, grads[4:])
    pb = _run(b, p, grads[4:])
    np.testing.assert_array_equal(pa, pb)


def test_get_state_returns_copies_and_set_state_checks_shapes():
    opt = Adam()
    opt.build(10, np.float32)
    state = opt.get_state()
    assert set(state) == {"iterations", "momentum", "velocity"}
    state["momentum"][:] = 1
    assert not opt.get_state()["momentum"].any()
    with pytest.raises(ValueError, match="momentum.*shape \\(10,\\).*Received: shape \\(9,\\)"):
        opt.set_state({"iterations": np.array(3), "momentum": np.zeros(9), "velocity": np.zeros(9)})
    with pytest.raises(ValueError, match="unknown entries \\['bogus'\\]"):
        opt.set_state({"iterations": np.array(0), "bogus": np.zeros(10)})
    with pytest.raises(ValueError, match="missing slots \\['velocity'\\]"):
        opt.set_state({"iterations": np.array(0), "momentum": np.zeros(10)})
    with pytest.raises(ValueError, match="iterations"):
        opt.set_state({"momentum": np.zeros(10), "velocity": np.zeros(10)})
    assert SGD().get_state().keys() == {"iterations"}


def test_build_is_idempotent_and_set_state_builds():
    opt = RMSprop(momentum=0.5)
    opt.build(8, "float64")
    slot = opt._slots["velocity"]
    opt.build(8, "float64")
    assert opt._slots["velocity"] is slot
    fresh = RMSprop(momentum=0.5)
    fresh.set_state({"iterations": np.array(2), "velocity": np.ones(8), "momentum": np.ones(8)})
    assert fresh.built and fresh.iterations == 2
    np.testing.assert_array_equal(fresh.get_state()["velocity"], np.ones(8))


# -------------------------------------------------------------------- config, get

@pytest.mark.parametrize("opt", [
    SGD(0.1, momentum=0.5, nesterov=True, weight_decay=0.01, clipnorm=1.0),
    RMSprop(0.002, rho=0.8, momentum=0.1, epsilon=1e-6, clipvalue=0.5),
    Adam(schedules.ExponentialDecay(0.01, 100, 0.9), beta_1=0.8),
    AdamW(schedules.CosineDecay(0.01, 100), weight_decay=0.02, epsilon=1e-8),
], ids=lambda o: type(o).__name__)
def test_config_round_trip(opt):
    config = opt.get_config()
    assert config["class_name"] == type(opt).__name__
    again = optimizers.get(config)
    assert type(again) is type(opt)
    assert again.get_config() == config


def test_plain_callable_learning_rate_is_stored_as_its_current_value():
    opt = SGD(lambda step: 0.5 / (step + 1))
    opt.iterations = 4
    assert opt.get_config()["learning_rate"] == pytest.approx(0.1)


def test_get():
    adam = Adam()
    assert optimizers.get(adam) is adam
    for name, cls in [("sgd", SGD), ("RMSprop", RMSprop), ("ADAM", Adam), ("adamw", AdamW)]:
        assert type(optimizers.get(name)) is cls
    with pytest.raises(ValueError, match="optimizer='adagrad'.*'sgd', 'rmsprop', 'adam', 'adamw'"):
        optimizers.get("adagrad")
    with pytest.raises(TypeError, match="optimizer=3"):
        optimizers.get(3)


def test_defaults_match_the_api():
    assert SGD().get_config() == {"class_name": "SGD", "learning_rate": 0.01, "momentum": 0.0,
                                  "nesterov": False, "weight_decay": None, "clipnorm": None,
                                  "clipvalue": None}
    assert RMSprop().get_config() == {"class_name": "RMSprop", "learning_rate": 0.001, "rho": 0.9,
                                      "momentum": 0.0, "epsilon": 1e-7, "clipnorm": None,
                                      "clipvalue": None}
    assert Adam().get_config() == {"class_name": "Adam", "learning_rate": 0.001, "beta_1": 0.9,
                                   "beta_2": 0.999, "epsilon": 1e-7, "clipnorm": None,
                                   "clipvalue": None}
    assert AdamW().get_config() == {"class_name": "AdamW", "learning_rate": 0.001,
                                    "weight_decay": 0.004, "beta_1": 0.9, "beta_2": 0.999,
                                    "epsilon": 1e-7, "clipnorm": None, "clipvalue": None}


@pytest.mark.parametrize("make,error,match", [
    (lambda: SGD(learning_rate=-1), ValueError, "expected a positive float.*Received: learning_rate=-1"),
    (lambda: Adam(learning_rate=0), ValueError, "learning_rate=0"),
    (lambda: Adam(learning_rate=float("nan")), ValueError, "learning_rate=nan"),
    (lambda: Adam(learning_rate="fast"), TypeError, "learning_rate='fast'"),
    (lambda: SGD(momentum=1.0), ValueError, "momentum=1"),
    (lambda: SGD(momentum=-0.1), ValueError, "momentum=-0.1"),
    (lambda: SGD(nesterov="yes"), TypeError, "nesterov='yes'"),
    (lambda: SGD(weight_decay=-0.5), ValueError, "weight_decay=-0.5"),
    (lambda: RMSprop(rho=1.5), ValueError, "rho=1.5"),
    (lambda: RMSprop(momentum=2), ValueError, "momentum=2"),
    (lambda: RMSprop(epsilon=-1e-7), ValueError, "epsilon=-1e-07"),
    (lambda: Adam(beta_1=1.0), ValueError, "beta_1=1"),
    (lambda: Adam(beta_2=-0.1), ValueError, "beta_2=-0.1"),
    (lambda: AdamW(weight_decay=-1), ValueError, "weight_decay=-1"),
    (lambda: Adam(clipnorm=0), ValueError, "clipnorm=0"),
    (lambda: SGD(clipvalue=-1), ValueError, "clipvalue=-1"),
    (lambda: SGD(clipnorm=1.0, clipvalue=1.0), ValueError, "only one of clipnorm and clipvalue"),
])
def test_bad_arguments_are_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_setting_a_bad_learning_rate_is_refused():
    opt = Adam()
    with pytest.raises(ValueError, match="learning_rate=-0.5"):
        opt.learning_rate = -0.5
    assert opt.learning_rate == 0.001
