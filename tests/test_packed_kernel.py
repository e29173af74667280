"""Fast tests for the packed kernel (a few MNIST rows + a small bulk batch)."""
import gzip
import os
import re
import warnings

import numpy as np
import pytest
from conftest import SHARED

from sei_adapter_sklearn import packed_kernel as K

DATA = str(SHARED)
MODEL = os.path.join(DATA, "seed-model", "sklearn_mnist_model.pkl")
IMAGES = os.path.join(DATA, "mnist", "t10k-images-idx3-ubyte.gz")


def _load():
    if os.path.exists(MODEL) and os.path.exists(IMAGES):
        import joblib
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = joblib.load(MODEL)
        with gzip.open(IMAGES) as f:
            X = np.frombuffer(f.read()[16:16 + 784 * 200], np.uint8).reshape(-1, 784) / 255.0
        return m.coef_.astype(np.float64), m.intercept_.astype(np.float64), X
    rng = np.random.default_rng(0)          # synthetic stand-in of the same shape
    W = rng.normal(0, 0.5, (10, 784))
    b = rng.normal(0, 1, 10)
    X = rng.random((200, 784))
    return W, b, X


W, B, X = _load()
REF = X @ W.T + B


@pytest.fixture(scope="module")
def single():
    p = K.choose_params(784, 10, "single")
    keys = K.ClientKeys.generate(p)
    srv = K.ServerModel(W, B, p)
    return p, keys, srv, srv.load_public(keys.public_bytes())


@pytest.fixture(scope="module")
def bulk():
    p = K.choose_params(784, 10, "bulk")
    keys = K.ClientKeys.generate(p)
    srv = K.ServerModel(W, B, p)
    return p, keys, srv, srv.load_public(keys.public_bytes())


def test_params_security():
    for mode in ("single", "bulk"):
        p = K.choose_params(784, 10, mode)
        assert p.security_bits_ok()
        assert p.total_coeff_modulus_bits() <= K.HES_MAX_BITS[p.poly_modulus_degree]
        assert p.max_abs_score() > 100
    with pytest.raises(ValueError):
        K.Params(poly_modulus_degree=1024).validate()


def test_single_rows_exact(single):
    p, keys, srv, pub = single
    for i in range(4):
        resp = srv.predict_row(keys.encrypt_row(X[i]), pub)
        s = keys.decrypt_scores(resp, 10, 1)
        assert s.shape == (1, 10)
        assert np.abs(s[0] - REF[i]).max() <= 1e-3
        assert s[0].argmax() == REF[i].argmax()


def test_bulk_exact(bulk):
    p, keys, srv, pub = bulk
    reqs = keys.encrypt_batch(X[:60])
    assert len(reqs) == 1
    s = keys.decrypt_scores(srv.predict_batch(reqs[0], pub), 10, 60)
    assert np.abs(s - REF[:60]).max() <= 1e-3
    assert np.array_equal(s.argmax(1), REF[:60].argmax(1))


def test_key_id_and_secret_roundtrip(single):
    p, keys, srv, pub = single
    assert re.fullmatch(r"[a-z2-7]{32}", keys.key_id)
    k2 = K.ClientKeys.from_secret_bytes(keys.secret_bytes())
    assert k2.key_id == keys.key_id
    s = k2.decrypt_scores(srv.predict_row(keys.encrypt_row(X[5]), pub), 10, 1)
    assert np.abs(s[0] - REF[5]).max() <= 1e-3


def test_garbage_rejected(single, bulk):
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
    for _ in range(20):   # random garbage with a correct header prefix never crashes
        blob = good[:24] + rng.integers(0, 256, len(good) - 24, dtype=np.uint8).tobytes()
        try:
            srv.predict_row(blob, pub)
        except K.KernelInputError:
            pass


# 784x10: two full blocks of 5; 10x1: one score in a block of 409; 1500x5: blocks of 2, 2 and 1
@pytest.mark.parametrize("n_features, n_outputs", [(784, 10), (10, 1), (1500, 5)])
def test_row_response_holds_the_scores_and_nothing_more(n_features, n_outputs):
    """c0 travels only at score coefficients: a client learns n_outputs numbers per row, not N // d."""
    rng = np.random.default_rng(n_features)
    W, b = rng.normal(0, 0.3, (n_outputs, n_features)), rng.normal(0, 1, n_outputs)
    x = rng.random(n_features)
    p = K.choose_params(n_features, n_outputs, "single")
    keys = K.ClientKeys.generate(p)
    srv = K.ServerModel(W, b, p)
    resp = srv.predict_row(keys.encrypt_row(x), srv.load_public(keys.public_bytes()))
    header = 24
    assert len(resp) == header + 4 * (n_outputs + p.n_blocks * p.poly_modulus_degree)
    assert np.abs(keys.decrypt_scores(resp, n_outputs, 1)[0] - (W @ x + b)).max() <= 1e-3
