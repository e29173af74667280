"""Fast tests for the packed kernel: a few rows and a small bulk batch of two data sets.

`mnist` is the tutorial's seed model and the MNIST test images shipped in data/;
`synthetic` is a random model of the same shape.
"""
import dataclasses
import os

import numpy as np
import pytest
from conftest import load_mnist, load_seed_model

from sei_adapter_sklearn import packed_kernel as K

from bench.kernel_params import choose_params


@pytest.fixture(scope="module", params=["mnist", "synthetic"])
def data(request):
    """(W, b, X, X @ W.T + b) of the MNIST seed model, or of a synthetic model of its shape."""
    if request.param == "mnist":
        m = load_seed_model()
        X, _ = load_mnist(200)
        W, b = m.coef_.astype(np.float64), m.intercept_.astype(np.float64)
    else:
        rng = np.random.default_rng(0)
        W, b, X = rng.normal(0, 0.5, (10, 784)), rng.normal(0, 1, 10), rng.random((200, 784))
    return W, b, X, X @ W.T + b


def _setup(data, mode):
    W, b, X, ref = data
    proof = K.plan(W, b, 0.0, 1.0, mode, 1e-3)   # inputs in [0, 1]: pixels / 255, or rng.random
    keys = K.ClientKeys.generate(proof.params)
    srv = K.ServerModel(W, b, proof.params)
    return proof, keys, srv, srv.load_public(keys.public_bytes())


@pytest.fixture(scope="module")
def single(data):
    return _setup(data, "single")


@pytest.fixture(scope="module")
def bulk(data):
    return _setup(data, "bulk")


def test_params_security():
    for mode in ("single", "bulk"):
        p = choose_params(784, 10, mode)
        assert p.security_bits_ok()
        assert p.total_coeff_modulus_bits() <= K.HES_MAX_BITS[p.poly_modulus_degree]
        assert p.max_abs_score() > 100
    with pytest.raises(ValueError):
        K.Params(poly_modulus_degree=1024).validate()
    for bad in (0.0, -1.0, float("nan"), float("inf")):  # HEAD turned 0 and negatives into 1
        with pytest.raises(ValueError, match="max_abs_score must be a finite number > 0"):
            choose_params(784, 10, "single", max_abs_score=bad)


def test_single_rows_exact(data, single):
    _, _, X, REF = data
    proof, keys, srv, pub = single
    for i in range(4):
        resp = srv.predict_row(keys.encrypt_row(X[i]), pub)
        s = keys.decrypt_scores(resp, 10, 1)
        assert s.shape == (1, 10)
        assert np.abs(s[0] - REF[i]).max() <= proof.error_bound <= 1e-3
        assert s[0].argmax() == REF[i].argmax()


def test_bulk_exact(data, bulk):
    _, _, X, REF = data
    proof, keys, srv, pub = bulk
    reqs = keys.encrypt_batch(X[:60])
    assert len(reqs) == 1
    s = keys.decrypt_scores(srv.predict_batch(reqs[0], pub), 10, 60)
    assert np.abs(s - REF[:60]).max() <= proof.error_bound <= 1e-3
    assert np.array_equal(s.argmax(1), REF[:60].argmax(1))


def test_full_modulus_responses(data):
    """Responses that keep both residues (no switch to 2^32) decode exactly as well, row and bulk."""
    W, b, X, REF = data
    for mode in ("single", "bulk"):
        p = dataclasses.replace(choose_params(784, 10, mode), response_bits=62)
        keys, srv = K.ClientKeys.generate(p), K.ServerModel(W, b, p)
        pub = srv.load_public(keys.public_bytes())
        if mode == "single":
            resp = srv.predict_row(keys.encrypt_row(X[0]), pub)
            assert len(resp) == 24 + 8 * (10 + p.n_blocks * 4096)
            got, ref = keys.decrypt_scores(resp, 10, 1), REF[:1]
        else:
            got, ref = keys.decrypt_scores(srv.predict_batch(keys.encrypt_batch(X[:5])[0], pub), 10, 5), REF[:5]
        assert np.abs(got - ref).max() <= K.analyse(W, b, np.zeros(784), np.ones(784), p).error_bound <= 1e-3


def test_key_id_and_secret_roundtrip(data, single):
    _, _, X, REF = data
    p, keys, srv, pub = single
    k2 = K.ClientKeys.from_secret_bytes(keys.secret_bytes())
    assert k2.public_bytes() == keys.public_bytes()
    s = k2.decrypt_scores(srv.predict_row(keys.encrypt_row(X[5]), pub), 10, 1)
    assert np.abs(s[0] - REF[5]).max() <= 1e-3


def test_garbage_rejected(data, single, bulk):
    X = data[2]
    p, keys, srv, pub = single
    rng = np.random.default_rng(1)
    good = keys.encrypt_row(X[0])
    bad_inputs = [b"", b"SEIP", os.urandom(10), os.urandom(len(good)), good[:-1], good[:len(good) // 2],
                  good + b"\0", bytes(len(good))]
    # valid header, residues out of range
    arr = bytearray(good)
    arr[-4:] = b"\xff\xff\xff\xff"
    bad_inputs.append(bytes(arr))
    # a bulk request sent to the row endpoint, and garbage public keys
    for b in bad_inputs:
        with pytest.raises(K.KernelInputError):
            srv.predict_row(b, pub)
    with pytest.raises(K.KernelInputError):
        srv.predict_batch(good, pub)
    pubb = keys.public_bytes()
    for b in [b"", os.urandom(len(pubb)), pubb[:-7], pubb[:40] + bytes(len(pubb) - 40)[:-4] + b"\xff" * 4]:
        with pytest.raises(K.KernelInputError):
            srv.load_public(b)
    # message made for other parameters
    pb, kb, sb, pubb2 = bulk
    with pytest.raises(K.KernelInputError):
        srv.load_public(kb.public_bytes())
    with pytest.raises(K.KernelInputError):
        keys.decrypt_scores(os.urandom(100), 10, 1)
    q = np.array(srv.params.data_primes, dtype=np.uint64)
    for _ in range(20):   # random words after a valid header: some word is >= its prime, always refused
        blob = good[:24] + rng.integers(0, 256, len(good) - 24, dtype=np.uint8).tobytes()
        with pytest.raises(K.KernelInputError, match="residue out of range"):
            srv.predict_row(blob, pub)
    for _ in range(3):    # random residues below the primes are a ciphertext of something: answered in full
        words = rng.integers(0, 2**31, (len(q), 4096), dtype=np.uint64) % q[:, None]
        blob = good[:24 + 32] + words.astype("<u4").tobytes()
        assert len(srv.predict_row(blob, pub)) == len(srv.predict_row(good, pub))


# 784x10: two full blocks of 5; 10x1: one score in a block of 409; 1500x5: blocks of 2, 2 and 1
@pytest.mark.parametrize("n_features, n_outputs", [(784, 10), (10, 1), (1500, 5)])
def test_row_response_holds_the_scores_and_nothing_more(n_features, n_outputs):
    """c0 travels only at score coefficients: a client learns n_outputs numbers per row, not N // d."""
    rng = np.random.default_rng(n_features)
    W, b = rng.normal(0, 0.3, (n_outputs, n_features)), rng.normal(0, 1, n_outputs)
    x = rng.random(n_features)
    p = choose_params(n_features, n_outputs, "single")
    keys = K.ClientKeys.generate(p)
    srv = K.ServerModel(W, b, p)
    resp = srv.predict_row(keys.encrypt_row(x), srv.load_public(keys.public_bytes()))
    header = 24
    assert len(resp) == header + 4 * (n_outputs + p.n_blocks * p.poly_modulus_degree)
    assert np.abs(keys.decrypt_scores(resp, n_outputs, 1)[0] - (W @ x + b)).max() <= 1e-3
