"""Hostile inputs (shared/reliability/cases.md, issue 12): a clear error or a correct result.

Every row is one kind of bad or extreme input. The only outcomes allowed are an exception
of the stated type, raised before anything is traced, whose message names the argument;
or a run whose result is finite and correct. The case numbers refer to cases.md (fmin's
own cases, 54-61, belong to the host driver's tests; 55 is here as it already passes).
Float32 rows pass a float32 ``x0`` (the tests enable x64, so the default would be float64).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.problems import sphere

F32 = np.float32
KEY = jax.random.key(0)


def _x(n=5, value=1.0, dtype=np.float64):
    return np.full(n, value, dtype)


def _run(strategy=None, fn=sphere, x0=None, sigma0=1.0, **kwargs):
    strategy = ec.cma_es(5) if strategy is None else strategy
    x0 = _x(strategy.num_dims) if x0 is None else x0
    return ec.minimize(strategy, fn, KEY, x0, sigma0, **kwargs)


def _params(strategy, **changes):
    p = strategy.default_params()
    return p._replace(
        **{k: jnp.asarray(v, jnp.asarray(getattr(p, k)).dtype) for k, v in changes.items()}
    )


def _open_es_params(lr):
    es = ec.open_es(5, 10)
    p = es.default_params()
    return es, p._replace(optimizer={**p.optimizer, "learning_rate": jnp.asarray(lr)})


def _without_x64(thunk):
    """Run `thunk` with JAX's default float32 (a float64 NumPy x0 then runs in float32)."""
    with jax.enable_x64(False):
        return thunk()


def _told(strategy, fitness_of, x0=None):
    """One ask/tell with the fitness `fitness_of(population)`."""
    state = strategy.init(KEY, _x(strategy.num_dims) if x0 is None else x0, 1.0)
    x, state = strategy.ask(KEY, state)
    return strategy.tell(state, x, fitness_of(x))


ERRORS = [
    # (case, thunk, exception, words the message must contain)
    ("1-zero", lambda: ec.cma_es(0), ValueError, "num_dims"),
    ("1-float", lambda: ec.cma_es(2.5), TypeError, "num_dims"),
    ("1-str", lambda: ec.cma_es("10"), TypeError, "num_dims"),
    ("3", lambda: ec.cma_es(5, popsize=1), ValueError, "popsize"),
    ("5", lambda: ec.cma_es(5, 10**12), ValueError, "popsize"),
    ("5-sep", lambda: ec.sep_cma_es(5, 10**12), ValueError, "popsize"),
    ("6", lambda: ec.cma_es(5, foo=1), TypeError, "foo"),
    ("7", lambda: ec.cma_es(5, preset="bogus"), ValueError, "preset"),
    ("7-sep", lambda: ec.sep_cma_es(5, preset="bogus"), ValueError, "preset"),
    ("8-str", lambda: ec.cma_es(5, ftarget="abc"), TypeError, "ftarget"),
    ("8-none", lambda: ec.cma_es(5, maxiter=None), TypeError, "maxiter"),
    ("9", lambda: ec.open_es(5, 10, learning_rate=-0.1), ValueError, "learning_rate"),
    ("11", lambda: ec.open_es(5, 10, weight_decay="x"), TypeError, "weight_decay"),
    ("12", lambda: ec.open_es(10, 20, chunk_size=3), ValueError, "chunk_size"),
    ("14-big", lambda: ec.open_es(5, 10, sigma_decay=1.5), ValueError, "sigma_decay"),
    ("14-inf", lambda: ec.open_es(5, 10, sigma_decay=np.inf), ValueError, "sigma_decay"),
    (
        "14-params",
        lambda: ec.open_es(5, 10).default_params(sigma_decay=2.0),
        ValueError,
        "sigma_decay",
    ),
    ("var-sigma_min", lambda: ec.variational(5, 10, sigma_min=0.0), ValueError, "sigma_min"),
    (
        "15-cma",
        lambda: ec.cma_es(5).init(KEY, _x(), 1.0, _params(ec.cma_es(5), c_sigma=3.0)),
        ValueError,
        "c_sigma",
    ),
    (
        "15-cma-sum",
        lambda: ec.cma_es(5).init(KEY, _x(), 1.0, _params(ec.cma_es(5), c1=0.6, c_mu=0.6)),
        ValueError,
        "c1 + c_mu",
    ),
    ("15-defaults", lambda: ec.cma_es(5).default_params(d_sigma=-1.0), ValueError, "d_sigma"),
    (
        "15-sep",
        lambda: ec.sep_cma_es(5).init(KEY, _x(), 1.0, _params(ec.sep_cma_es(5), c_mu=5.0)),
        ValueError,
        "c_mu",
    ),
    (
        "15-lm",
        lambda: ec.lm_ma_es(5).init(KEY, _x(), 1.0, _params(ec.lm_ma_es(5), c_sigma=-1.0)),
        ValueError,
        "c_sigma",
    ),
    (
        "16-open_es",
        lambda: _run(*_open_es_params(-0.1)[:1], params=_open_es_params(-0.1)[1]),
        ValueError,
        "learning_rate",
    ),
    (
        "16-popsize",
        lambda: _run(params=_params(ec.cma_es(5), popsize=1)),
        ValueError,
        "popsize",
    ),
    (
        "16-nan",
        lambda: _run(params=_params(ec.cma_es(5), c_c=np.nan)),
        ValueError,
        "c_c",
    ),
    ("17-length", lambda: ec.cma_es(5).init(KEY, np.ones(4), 1.0), ValueError, "x0"),
    ("17-nan", lambda: _run(x0=_x(value=np.nan)), ValueError, "x0"),
    ("17-complex", lambda: ec.cma_es(5).init(KEY, np.ones(5) + 1j, 1.0), TypeError, "x0"),
    ("17-str", lambda: ec.cma_es(5).init(KEY, np.array(["1"] * 5), 1.0), TypeError, "x0"),
    ("19", lambda: _run(x0=_x(dtype=np.float16)), TypeError, "x0"),
    ("19-init", lambda: ec.cma_es(5).init(KEY, _x(dtype=np.float16), 1.0), TypeError, "x0"),
    ("20", lambda: _without_x64(lambda: _run(x0=_x(value=1e39))), ValueError, "x0"),
    ("22-default", lambda: _without_x64(lambda: _run(sigma0=1e39)), ValueError, "sigma0"),
    ("20-f64", lambda: _run(x0=_x(value=np.inf)), ValueError, "x0"),
    ("21-zero", lambda: _run(sigma0=0.0), ValueError, "sigma0"),
    ("21-shape", lambda: _run(sigma0=np.ones(3)), ValueError, "sigma0"),
    ("22-tiny", lambda: _run(x0=_x(dtype=F32), sigma0=1e-46), ValueError, "sigma0"),
    ("22-huge", lambda: _run(x0=_x(dtype=F32), sigma0=1e39), ValueError, "sigma0"),
    ("22-init", lambda: ec.sep_cma_es(5).init(KEY, _x(dtype=F32), 1e-46), ValueError, "sigma0"),
    ("23", lambda: _run(sigma0=1 + 1j), TypeError, "sigma0"),
    ("24-minimize", lambda: ec.minimize(ec.cma_es(5), sphere, 0, _x(), 1.0), TypeError, "key"),
    (
        "24-ask",
        lambda: ec.cma_es(5).ask(0, ec.cma_es(5).init(None, _x(), 1.0)),
        TypeError,
        "key",
    ),
    (
        "24-open_es",
        lambda: ec.open_es(5, 10).ask(7, ec.open_es(5, 10).init(None, _x(), 1.0)),
        TypeError,
        "key",
    ),
    ("26", lambda: _told(ec.cma_es(5), lambda x: jnp.zeros(x.shape[0] + 1)), ValueError, "fitness"),
    ("28", lambda: _told(ec.cma_es(5), lambda x: jnp.zeros(x.shape[0]) + 1j), TypeError, "fitness"),
    (
        "28-sep",
        lambda: _told(ec.sep_cma_es(5), lambda x: jnp.zeros(x.shape[0]) + 1j),
        TypeError,
        "fitness",
    ),
    (
        "31",
        lambda: ec.cma_es(5).tell(
            ec.cma_es(5).init(None, _x(), 1.0), jnp.zeros((7, 5)), jnp.zeros(8)
        ),
        ValueError,
        "population",
    ),
    (
        "33",
        lambda: ec.sep_cma_es(5).tell(
            ec.cma_es(5).init(None, _x(), 1.0), jnp.zeros((8, 5)), jnp.zeros(8)
        ),
        TypeError,
        "state",
    ),
    (
        "33-gaussian",
        lambda: ec.variational(5, 10).tell(
            ec.open_es(5, 10).init(None, _x(), 1.0), jnp.zeros((10, 5)), jnp.zeros(10)
        ),
        TypeError,
        "state",
    ),
    ("35-list", lambda: _run(options=[1, 2]), TypeError, "options"),
    ("35-name", lambda: _run(options={"ftargt": 1.0}), TypeError, "ftargt"),
    ("36-maxiter", lambda: _run(options={"maxiter": 0}), ValueError, "maxiter"),
    ("36-negative", lambda: _run(options={"maxiter": -5}), ValueError, "maxiter"),
    ("36-maxfevals", lambda: _run(options={"maxfevals": 0}), ValueError, "maxfevals"),
    ("37", lambda: _run(options={"ftarget": np.nan}), ValueError, "ftarget"),
    ("38", lambda: _run(options={"maxiter": jnp.array([10.0, 20.0])}), ValueError, "maxiter"),
    ("38-complex", lambda: _run(options={"tolx": 1j}), TypeError, "tolx"),
    ("39", lambda: _run(fn=lambda x: x**2), ValueError, "fn"),
    ("39-complex", lambda: _run(fn=lambda x: jnp.sum(x) * 1j), TypeError, "fn"),
    ("40", lambda: _run(fn=lambda x: x[0] ** 2 + x[7], batched=True), ValueError, "fn"),
    ("40-scalar", lambda: _run(fn=sphere, batched=True), ValueError, "fn"),
    ("42-order", lambda: _run(bounds=(1.0, 0.0)), ValueError, "bounds"),
    ("42-equal", lambda: _run(bounds=(1.0, 1.0)), ValueError, "bounds"),
    ("42-nan", lambda: _run(bounds=(np.nan, 1.0)), ValueError, "bound"),
    ("42-length", lambda: _run(bounds=(np.zeros(3), 1.0)), ValueError, "bound"),
    ("42-triple", lambda: _run(bounds=(0.0, 1.0, 2.0)), TypeError, "bounds"),
    ("43", lambda: _run(bounds=("a", "b")), TypeError, "bound"),
    ("44", lambda: _run(x0=_x(dtype=F32), bounds=(1.0, 1.0 + 1e-10)), ValueError, "box"),
    ("46", lambda: ec.scaling(0.0), ValueError, "scale"),
    ("46-nan", lambda: ec.scaling(np.nan), ValueError, "scale"),
    ("47", lambda: _run(x0=_x(dtype=F32), encoding=ec.scaling(1e-300)), ValueError, "scale"),
    ("47-encode", lambda: _run(x0=_x(value=1e10), encoding=ec.scaling(1e-300)), ValueError, "x0"),
    ("48-scale", lambda: _run(encoding=ec.scaling(np.ones(3))), ValueError, "scale"),
    ("48-mask", lambda: _run(encoding=ec.log_scale(np.ones(3, bool))), ValueError, "mask"),
    ("49", lambda: _run(x0=_x(value=-1.0), encoding=ec.log_scale()), ValueError, "log_scale"),
    ("50-callable", lambda: _run(constraints=3.0), TypeError, "constraints"),
    ("50-scalar", lambda: _run(constraints=lambda x: jnp.sum(x)), ValueError, "constraints"),
    ("50-nan", lambda: _run(constraints=lambda x: x[:1] * jnp.nan), ValueError, "constraints"),
    ("52-type", lambda: _run(noise_handling="yes"), TypeError, "noise_handling"),
    (
        "52-strategy",
        lambda: _run(ec.open_es(5, 10), noise_handling=True),
        ValueError,
        "NoiseHandler",
    ),
    (
        "53",
        lambda: ec.minimize_restarts(sphere, KEY, _x(), 1.0, restarts=30),
        ValueError,
        "restarts",
    ),
    ("53-key", lambda: ec.minimize_restarts(sphere, 3, _x(), 1.0), TypeError, "key"),
    (
        "53-sigma0",
        lambda: ec.minimize_restarts(sphere, KEY, _x(dtype=F32), 1e39),
        ValueError,
        "sigma0",
    ),
    (
        "53-options",
        lambda: ec.minimize_restarts(sphere, KEY, _x(), 1.0, {"ftarget": "x"}),
        TypeError,
        "ftarget",
    ),
    (
        "55",
        lambda: ec.fmin(lambda x: None, _x(3), 1.0, {"verbose": 0}),
        (TypeError, ValueError),
        "None",
    ),
    (
        "65",
        lambda: jax.vmap(lambda x0: _run(x0=x0))(jnp.ones((2, 4))),
        ValueError,
        "x0",
    ),
]


@pytest.mark.parametrize("case, thunk, exc, words", ERRORS, ids=[r[0] for r in ERRORS])
def test_clear_error_naming_the_argument(case, thunk, exc, words):
    with pytest.raises(exc) as info:
        thunk()
    message = str(info.value)
    assert words in message, (case, message)
    assert "Traceback" not in message and "tracer" not in message.lower(), message


def _finite_state(state):
    for leaf in jax.tree.leaves(state):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.floating):
            assert np.all(np.isfinite(leaf) | np.isposinf(leaf)), leaf  # inf: empty history


def test_accepted_numbers_of_other_types():
    # cases 2, 10, 13, 18, 25: NumPy scalars, integer x0, a raw uint32 key
    assert ec.cma_es(np.int64(10)).num_dims == 10
    es = ec.open_es(5, 10, learning_rate=np.float32(0.01), chunk_size=np.int64(10))
    assert es.chunk_size == 10
    state = ec.cma_es(5).init(None, np.ones(5, int), 1.0)
    assert state.mean.dtype == jnp.result_type(float)
    res = ec.minimize(
        ec.cma_es(5), sphere, jax.random.PRNGKey(0), _x(), 1.0, options={"ftarget": 1e-8}
    )
    assert float(res.best_f) <= 1e-8


@pytest.mark.parametrize("make", [ec.cma_es, ec.sep_cma_es, ec.lm_ma_es])
def test_int_bool_and_wide_fitness_are_ranked(make):
    # cases 27 and 30: integer and boolean fitness; +-1e308 told to a float32 state
    es = make(5)
    _finite_state(_told(es, lambda x: jnp.arange(x.shape[0])))
    _finite_state(_told(es, lambda x: jnp.arange(x.shape[0]) % 2 == 0))
    wide = np.where(np.arange(es.popsize) % 2 == 0, 1e308, -1e308)
    state = _told(es, lambda x: wide, x0=_x(dtype=F32))
    _finite_state(state)
    assert state.mean.dtype == F32
    assert float(state.best_f) == -float(np.finfo(F32).max)  # clipped, not -inf


def test_nan_objective_and_nan_rows_stay_finite():
    # cases 29, 32, 34, 41
    res = _run(fn=lambda x: jnp.nan * jnp.sum(x), x0=_x(dtype=F32))
    _finite_state(res.state)
    assert ec.stop_reasons(res.stop_flags) == ["tolflatfitness"]
    raw = ec.open_es(5, 10, shaping="raw")
    _finite_state(_told(raw, lambda x: jnp.full(x.shape[0], jnp.nan)))


def test_bound_transform_and_bounds_keep_points_in_a_tiny_box_float32():
    # defect 5 and case 45: bounds (0, 1e-6), sigma0 = 1e3, float32
    t = ec.bound_transform(0.0, 1e-6)
    wide = jax.random.normal(KEY, (100_000, 3), F32) * 1e3
    y = np.asarray(t.decode(wide))
    assert y.dtype == F32 and y.min() >= 0.0 and y.max() <= F32(1e-6)
    seen = []

    def record(points):
        seen.append((float(points.min()), float(points.max())))

    def fn(x):
        jax.debug.callback(record, x)
        outside = jnp.any((x < 0) | (x > F32(1e-6)))
        return jnp.where(outside, jnp.nan, jnp.sum((x - 3e-7) ** 2))

    res = _run(
        fn=fn, x0=np.full(5, 5e-7, F32), sigma0=1e3, bounds=(0.0, 1e-6), options={"maxiter": 30}
    )
    assert seen and min(lo for lo, _ in seen) >= 0.0 and max(hi for _, hi in seen) <= F32(1e-6)
    assert np.isfinite(float(res.best_f))
    assert np.all((np.asarray(res.best_x) >= 0) & (np.asarray(res.best_x) <= F32(1e-6)))


def test_open_es_sigma_decay_without_sigma_min_keeps_sigma_positive_float32():
    # defect 6: sigma_decay=0.9 with the default sigma_min = 0 underflowed sigma near 830
    es = ec.open_es(5, 10, sigma_decay=0.9)
    state = es.init(None, np.zeros(5, F32), 1.0)

    def step(state, k):
        x, state = es.ask(k, state)
        return es.tell(state, x, jax.vmap(sphere)(x)), None

    state, _ = jax.lax.scan(step, state, jax.random.split(KEY, 1500))
    _finite_state(state)
    assert float(state.sigma) > 0


@pytest.mark.parametrize("make", [ec.open_es, ec.variational])
def test_raw_shaping_of_huge_values_keeps_adam_finite_float32(make):
    # defect 6: |f| >= 1e20 overflowed Adam's second moment in float32
    es = make(5, 10, shaping="raw")
    state = es.init(None, np.ones(5, F32), 1.0)
    for g in range(5):
        x, state = es.ask(jax.random.key(g), state)
        state = es.tell(state, x, 1e20 * jax.vmap(sphere)(x))
    _finite_state(state)
    assert not np.allclose(np.asarray(state.mean), 1.0)  # it moved


def _invalid(res):
    return ec.stop_reasons(res.stop_flags) == ["invalid_input"] and int(res.state.generation) == 0


@pytest.mark.parametrize(
    "sigma0, x0",
    [(0.0, 1.0), (np.nan, 1.0), (-1.0, 1.0), (np.inf, 1.0), (1.0, np.nan), (1e-46, 1.0)],
    ids=["62-zero", "62-nan", "63-negative", "inf", "62-x0-nan", "22-underflow"],
)
def test_invalid_values_under_jit_stop_at_once(sigma0, x0):
    run = jax.jit(lambda s, x: _run(x0=x, sigma0=s))
    res = run(F32(sigma0), jnp.full(5, x0, F32))
    assert _invalid(res), ec.stop_reasons(res.stop_flags)
    assert float(res.best_f) == np.inf


def test_invalid_params_under_jit_stop_at_once():
    es = ec.cma_es(5)
    res = jax.jit(lambda c: _run(es, params=es.default_params(c_sigma=c)))(jnp.nan)
    assert _invalid(res)
    oes = ec.open_es(5, 10)
    res = jax.jit(lambda lr: _run(oes, params=oes.default_params(learning_rate=lr)))(-0.1)
    assert _invalid(res)


def test_invalid_run_leaves_the_rest_of_the_batch_untouched():
    # cases 62-64 under vmap: the NaN and sigma0 <= 0 rows stop at once, the good rows
    # are the runs they would be in a batch of good rows only (same layout: size 3)
    es = ec.cma_es(5)
    run = jax.vmap(lambda x0, s: _run(es, x0=x0, sigma0=s, options={"ftarget": 1e-8}))
    x0s = jnp.stack([jnp.ones(5), jnp.full(5, jnp.nan), jnp.ones(5)])
    mixed = run(x0s, jnp.array([1.0, 1.0, -1.0]))
    clean = run(jnp.ones((3, 5)), jnp.ones(3))
    assert ec.stop_reasons(mixed.stop_flags) == [["ftarget"], ["invalid_input"], ["invalid_input"]]
    np.testing.assert_array_equal(np.asarray(mixed.state.generation)[1:], [0, 0])
    for a, b in zip(jax.tree.leaves(mixed.state), jax.tree.leaves(clean.state), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b)[0])


def test_restarts_with_invalid_sigma0_under_jit_make_no_evaluation():
    # case 66: jit(minimize_restarts) with sigma0 = -1 spent 21 evaluations, best_f 1.03
    res = jax.jit(lambda s: ec.minimize_restarts(sphere, KEY, jnp.ones(5), s))(-1.0)
    assert ec.stop_reasons(res.stop_flags) == ["invalid_input"]
    assert int(res.evals) == 0 and int(res.runs) == 1 and float(res.best_f) == np.inf


def test_invalid_input_is_a_flag_but_not_an_option():
    assert ec.STOP_NAMES[-1] == "invalid_input"
    with pytest.raises(TypeError, match="invalid_input"):
        ec.cma_es(5).stop_options(invalid_input=1.0)
    es = ec.cma_es(5)
    state = es.init(None, _x(), 1.0)
    assert not bool(jnp.any(es.stop(state)))  # a valid start sets no flag


def test_default_and_oracle_params_are_in_range():
    # the range checks accept every preset's defaults at small and large λ
    for make, presets in (
        (ec.cma_es, ("pycma", "tutorial")),
        (ec.sep_cma_es, ("ros_hansen", "cmaes")),
    ):
        for preset in presets:
            for n, lam in ((1, 2), (2, 200), (5, 8), (10, 100), (100, 17)):
                es = make(n, lam, preset=preset)
                es.check_params(es.default_params())
    for es in (ec.lm_ma_es(2, 50), ec.open_es(3, 4), ec.variational(3, 4)):
        es.check_params(es.default_params())
