"""One keyword vocabulary: the drivers' signatures come from the groups of run/keywords.py."""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import evojax_cma as ec
from evojax_cma.run import keywords
from evojax_cma.run.keywords import (
    EvaluationKeywords,
    ProblemKeywords,
    RecordingKeywords,
    RestartKeywords,
)
from evojax_cma.sweep import run_bytes


def _names(group):
    return {f.name for f in dataclasses.fields(group)}


DRIVERS = {
    "minimize": ec.minimize,
    "minimize_restarts": ec.minimize_restarts,
    "fmin": ec.fmin,
    "sweep": ec.sweep,
}
# keywords a driver does not take, and defaults it declares otherwise (its decorator)
NOT_TAKEN = {
    "minimize": _names(RestartKeywords),
    "minimize_restarts": {"n_repeats", "common_keys"} | _names(EvaluationKeywords),
    "fmin": {"keyed", "n_repeats", "common_keys", "bounds", "bound_handler", "segment"}
    | _names(EvaluationKeywords),
    "sweep": {"progress", "segment", "checkpoint", "checkpoint_every", "resume"}
    | _names(RestartKeywords),
}
DECLARED = {("minimize_restarts", "restarts"): 9}
GROUPS = (ProblemKeywords, EvaluationKeywords, RestartKeywords, RecordingKeywords)


def _params(fn):
    return inspect.signature(fn).parameters


def test_groups_are_frozen_dataclasses_with_a_doc_per_field():
    names = [f.name for g in GROUPS for f in dataclasses.fields(g)]
    assert len(names) == len(set(names)), "a keyword belongs to one group"
    for group in GROUPS:
        assert group.__dataclass_params__.frozen
        for f in dataclasses.fields(group):
            assert f.default is not dataclasses.MISSING, f.name
            assert len(f.metadata["doc"]) > 10, f.name
        with pytest.raises(dataclasses.FrozenInstanceError):
            group().__setattr__(dataclasses.fields(group)[0].name, 1)


@pytest.mark.parametrize("name", DRIVERS)
def test_signatures_list_the_shared_keywords_with_one_default(name):
    params = _params(DRIVERS[name])
    for group in GROUPS:
        for f in dataclasses.fields(group):
            if f.name in NOT_TAKEN[name]:
                assert f.name not in params, (name, f.name)
                continue
            p = params[f.name]
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, f.name)
            assert p.default == DECLARED.get((name, f.name), f.default), (name, f.name)
            assert p.annotation == f.type, (name, f.name)
    # the groups themselves are no keywords of the public drivers
    assert not {"problem", "evaluation", "schedule", "recording"} & set(params)


def test_the_declared_differences_and_the_shared_defaults():
    restarts = {n: _params(DRIVERS[n])["restarts"].default for n in ("fmin", "minimize_restarts")}
    assert restarts == {"fmin": 0, "minimize_restarts": 9}  # pycma's fmin2 default; IPOP
    for kw in ("batched", "encoding", "constraints", "noise_handling", "history", "progress"):
        defaults = {_params(f)[kw].default for n, f in DRIVERS.items() if kw in _params(f)}
        assert len(defaults) == 1, (kw, defaults)


def test_leading_arguments_and_return_annotations_are_kept():
    assert list(_params(ec.minimize))[:7] == [
        "strategy",
        "fn",
        "key",
        "x0",
        "sigma0",
        "params",
        "options",
    ]
    assert list(_params(ec.fmin))[:4] == ["fn", "x0", "sigma0", "options"]
    assert inspect.signature(ec.minimize).return_annotation == "RunResult"
    assert inspect.signature(ec.fmin).return_annotation == "tuple[np.ndarray, FminResult]"
    assert inspect.signature(ec.minimize_restarts).return_annotation == "RestartResult"
    assert "**minimize_keywords" in str(inspect.signature(ec.sweep))
    assert list(_params(run_bytes))[:6] == ["strategy", "fn", "x0", "sigma0", "params", "options"]


def test_help_lists_every_keyword_with_its_default_and_meaning():
    text = " ".join(ec.minimize.__doc__.split())  # wrapped lines folded
    for group in (ProblemKeywords, EvaluationKeywords, RecordingKeywords):
        for f in dataclasses.fields(group):
            assert f"{f.name}={f.default!r}: {f.metadata['doc']}" in text, f.name
    assert "restarts=9:" in ec.minimize_restarts.__doc__
    assert "restarts=0:" in ec.fmin.__doc__
    # pydoc renders the signature: every keyword with its annotation and default
    assert "bound_handler: 'str' = 'transform'" in str(inspect.signature(ec.minimize))


def _sphere(x):
    return jnp.sum(x**2)


def _run_minimize(**kw):
    es = ec.cma_es(4)
    return ec.minimize(
        es, _sphere, jax.random.key(3), jnp.ones(4), 0.5, None, {"maxiter": 25}, **kw
    )


def _every_default(group, drop=()):
    return {f.name: f.default for f in dataclasses.fields(group) if f.name not in drop}


# pinned before the keyword groups existed (commit bf5c8d2, x64, this test's settings)
BEFORE_MINIMIZE = (0.0002241497174083032, 200)
BEFORE_RESTARTS = (3.3839628798751974e-08, 408, 1)
BEFORE_FMIN = (0.0006138633906234301, 208)


def test_every_keyword_spelled_out_gives_the_run_with_defaults_and_as_before():
    plain = _run_minimize()
    spelled = _run_minimize(
        data=None,
        chunked=False,
        maximize=False,
        generations=None,
        sharding=None,
        **_every_default(ProblemKeywords),
        **_every_default(EvaluationKeywords),
        **_every_default(RecordingKeywords),
    )
    for a, b in zip(jax.tree.leaves(plain.state), jax.tree.leaves(spelled.state), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(float(plain.best_f), BEFORE_MINIMIZE[0], rtol=1e-9)
    assert int(plain.state.evals) == BEFORE_MINIMIZE[1]

    options = {"maxfevals": 400}
    key = jax.random.key(3)
    plain = ec.minimize_restarts(_sphere, key, jnp.ones(4), 0.5, options, restarts=2)
    spelled = ec.minimize_restarts(
        _sphere,
        key,
        jnp.ones(4),
        0.5,
        options,
        popsize=None,
        max_popsize=None,
        preset="pycma",
        active=True,
        num_dims=4,
        **_every_default(ProblemKeywords, drop=("n_repeats", "common_keys")),
        **{**_every_default(RestartKeywords), "restarts": 2},
        **_every_default(RecordingKeywords),
    )
    assert float(plain.best_f) == float(spelled.best_f)
    assert (int(plain.evals), int(plain.runs)) == (int(spelled.evals), int(spelled.runs))
    np.testing.assert_allclose(float(plain.best_f), BEFORE_RESTARTS[0], rtol=1e-9)
    assert (int(plain.evals), int(plain.runs)) == BEFORE_RESTARTS[1:]

    def host(x):
        return float(np.sum(x**2))

    options = {"maxfevals": 200, "verbose": 0}
    x_plain, plain = ec.fmin(host, np.ones(4), 0.5, options)
    x_spelled, spelled = ec.fmin(
        host,
        np.ones(4),
        0.5,
        options,
        executor=None,
        strategy=None,
        params=None,
        dtype="float64",
        batched=False,
        encoding=None,
        constraints=None,
        noise_handling=False,
        **_every_default(RestartKeywords),
        **_every_default(RecordingKeywords, drop=("segment",)),
    )
    np.testing.assert_array_equal(x_plain, x_spelled)
    assert (plain.fbest, plain.evals) == (spelled.fbest, spelled.evals)
    np.testing.assert_allclose(plain.fbest, BEFORE_FMIN[0], rtol=1e-9)
    assert plain.evals == BEFORE_FMIN[1]


def test_keywords_reach_the_driver():
    res = _run_minimize(bounds=(0.5, 2.0), history=True, n_repeats=1)
    assert np.all(np.asarray(res.best_x) >= 0.5) and res.history is not None
    res = ec.minimize_restarts(_sphere, jax.random.key(0), jnp.ones(4), 0.5, {"maxfevals": 50})
    assert int(res.runs) == 1  # maxfevals ends the schedule
    with pytest.raises(ValueError, match="bound_handler"):  # checked in one place
        _run_minimize(bound_handler="clip")
    with pytest.raises(ValueError, match="n_repeats"):
        _run_minimize(n_repeats=2)  # needs keyed


@pytest.mark.parametrize(
    "call",
    [
        lambda: _run_minimize(bound=(0, 1)),
        lambda: _run_minimize(problem=ProblemKeywords()),
        lambda: ec.minimize_restarts(_sphere, jax.random.key(0), jnp.ones(4), 0.5, n_repeats=2),
        lambda: ec.fmin(lambda x: 0.0, np.ones(4), 0.5, bounds=(0, 1)),
        lambda: ec.fmin(lambda x: 0.0, np.ones(4), 0.5, segment=10),
    ],
    ids=["typo", "group", "restarts-n_repeats", "fmin-bounds", "fmin-segment"],
)
def test_an_unknown_keyword_is_a_type_error_naming_it_and_the_function(call):
    with pytest.raises(TypeError, match=r"\w+\(\) got an unexpected keyword argument '\w+'"):
        call()


def test_the_type_error_names_the_function_and_the_keyword():
    with pytest.raises(
        TypeError, match=r"^minimize\(\) got an unexpected keyword argument 'bound'"
    ):
        _run_minimize(bound=(0, 1))
    with pytest.raises(TypeError, match=r"^fmin\(\) got an unexpected keyword argument 'bounds'"):
        ec.fmin(lambda x: 0.0, np.ones(4), 0.5, bounds=(0, 1))


def test_a_keyword_given_twice_is_a_type_error():
    es, key = ec.cma_es(4), jax.random.key(0)
    with pytest.raises(TypeError, match="multiple values for argument 'options'"):
        ec.minimize(es, _sphere, key, jnp.ones(4), 0.5, None, {"maxiter": 2}, options={})


def test_sweep_forwards_minimize_keywords_and_refuses_single_run_ones():
    es = ec.cma_es(4)
    res = ec.sweep(es, _sphere, jnp.ones(4), 0.5, options={"maxiter": 5}, bounds=(0.5, 2.0))
    assert np.all(np.asarray(res.results.best_x) >= 0.5)
    with pytest.raises(TypeError, match="sweep does not take.*progress"):
        ec.sweep(es, _sphere, jnp.ones(4), 0.5, progress=True)


def test_takes_and_driver_refuse_bad_declarations():
    with pytest.raises(TypeError, match="no field"):
        keywords.takes(RestartKeywords, "restart")
    with pytest.raises(TypeError, match="not taken"):
        keywords.takes(RestartKeywords, "bipop", restarts=3)

    def body(x, *, bounds=None, problem):
        return problem

    with pytest.raises(TypeError, match="bounds"):
        keywords.driver(problem=ProblemKeywords)(body)
