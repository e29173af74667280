"""Benchmark of the packed HE kernel on the MNIST 784x10 LogisticRegression.

Measures side by side in one run (medians of repeated timings):
  * single prediction: server ms, request/response/public-key bytes, client
    keygen/encrypt/decrypt ms, errors vs decision_function
  * bulk: server predictions/s over all 10,000 test images, digit agreement
    and max abs error on all 10,000, client encrypt/decrypt time
  * optionally Microsoft encrypted-inference 0.9 EIServer.predict on one image

usage: python bench/bench_kernel.py [--json out.json] [--single-rows 200] [--no-eiserver]
"""
import argparse
import gzip
import json
import os
import statistics
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

sys.path.insert(0, os.path.dirname(HERE))  # run as a script: the repository root, for bench.kernel_params
from bench.kernel_params import choose_params  # noqa: E402
from sei_adapter_sklearn import packed_kernel as K  # noqa: E402

DATA = os.path.join(HERE, "..", "data")  # shipped in the repository (data/README.md)


def load():
    from sei_adapter_sklearn.model_files import load_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = load_model(os.path.join(DATA, "seed-model", "sklearn_mnist_model.pkl"))
    with gzip.open(os.path.join(DATA, "mnist", "t10k-images-idx3-ubyte.gz")) as f:
        X = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 784) / 255.0
    with gzip.open(os.path.join(DATA, "mnist", "t10k-labels-idx1-ubyte.gz")) as f:
        y = np.frombuffer(f.read()[8:], np.uint8)
    return m, X, y


def med(fn, n):
    ts = []
    out = None
    for _ in range(n):
        t = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=os.path.join("/tmp", "bench_kernel.json"))
    ap.add_argument("--single-rows", type=int, default=200, help="rows run through the single-row path")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--bulk-repeats", type=int, default=3)
    ap.add_argument("--no-eiserver", action="store_true")
    args = ap.parse_args()

    m, X, y = load()
    W, b = m.coef_.astype(np.float64), m.intercept_.astype(np.float64)
    ref = m.decision_function(X)
    ref_digit = m.predict(X)
    R = {}

    # ---------------- single row -------------------------------------------
    p = choose_params(784, 10, "single")
    R["params_single"] = json.loads(p.to_json())
    R["security_single"] = {"total_bits": p.total_coeff_modulus_bits(),
                            "hes_max": K.HES_MAX_BITS[p.poly_modulus_degree], "ok": p.security_bits_ok()}
    K.ClientKeys.generate(p)  # warm the context cache
    t_kg, keys = med(lambda: K.ClientKeys.generate(p), 5)
    srv = K.ServerModel(W, b, p)
    t_lp, pub = med(lambda: srv.load_public(keys.public_bytes()), 5)
    t_enc, req = med(lambda: keys.encrypt_row(X[0]), args.repeats)
    srv.predict_row(req, pub)
    reqs = [keys.encrypt_row(X[i]) for i in range(args.repeats)]
    ts = []
    resps = []
    for r in reqs:
        t = time.perf_counter()
        resps.append(srv.predict_row(r, pub))
        ts.append(time.perf_counter() - t)
    t_srv = statistics.median(ts)
    t_dec, _ = med(lambda: keys.decrypt_scores(resps[0], 10, 1), args.repeats)
    # accuracy on the single-row path
    n1 = min(args.single_rows, X.shape[0])
    s1 = np.vstack([keys.decrypt_scores(srv.predict_row(keys.encrypt_row(X[i]), pub), 10, 1) for i in range(n1)])
    R["single"] = {
        "server_ms_median": t_srv * 1e3, "server_ms_p90": float(np.percentile(ts, 90)) * 1e3,
        "request_bytes": len(req), "response_bytes": len(resps[0]),
        "public_key_bytes": len(keys.public_bytes()), "secret_blob_bytes": len(keys.secret_bytes()),
        "client_keygen_ms": t_kg * 1e3, "client_encrypt_ms": t_enc * 1e3, "client_decrypt_ms": t_dec * 1e3,
        "server_load_public_ms": t_lp * 1e3,
        "rows_checked": n1, "max_abs_error": float(np.abs(s1 - ref[:n1]).max()),
        "digit_agreement": float((s1.argmax(1) == ref_digit[:n1]).mean()),
    }

    # ---------------- bulk -------------------------------------------------
    pb = choose_params(784, 10, "bulk")
    R["params_bulk"] = json.loads(pb.to_json())
    kb = K.ClientKeys.generate(pb)
    sb = K.ServerModel(W, b, pb)
    pubb = sb.load_public(kb.public_bytes())
    t = time.perf_counter()
    breqs = kb.encrypt_batch(X)
    t_benc = time.perf_counter() - t
    srv_times = []
    for _ in range(args.bulk_repeats):
        t = time.perf_counter()
        bresps = [sb.predict_batch(r, pubb) for r in breqs]
        srv_times.append(time.perf_counter() - t)
    t_bsrv = statistics.median(srv_times)
    t = time.perf_counter()
    sc = np.vstack([kb.decrypt_scores(r, 10) for r in bresps])
    t_bdec = time.perf_counter() - t
    R["bulk"] = {
        "rows": int(X.shape[0]), "chunks": len(breqs),
        "server_seconds_median": t_bsrv, "server_predictions_per_s": X.shape[0] / t_bsrv,
        "server_seconds_all_repeats": srv_times,
        "request_bytes_total": sum(len(r) for r in breqs), "response_bytes_total": sum(len(r) for r in bresps),
        "client_encrypt_s": t_benc, "client_decrypt_s": t_bdec,
        "digit_agreement": float((sc.argmax(1) == ref_digit).mean()),
        "digits_equal": int((sc.argmax(1) == ref_digit).sum()),
        "max_abs_error": float(np.abs(sc - ref).max()),
        "label_accuracy": float((sc.argmax(1) == y).mean()),
    }

    # ---------------- Microsoft encrypted-inference 0.9 ---------------------
    if not args.no_eiserver:
        try:
            from encrypted.inference.eiclient import EILinearRegressionClient
            from encrypted.inference.eiserver import EIServer
            cl = EILinearRegressionClient(verbose=False)
            _kid, pk = cl.get_public_keys()          # (key_id, public keys)
            es = EIServer(W, b, verbose=False)
            ect = cl.encrypt(X[0])
            times = []
            for _ in range(3):
                t = time.perf_counter()
                er = es.predict(ect, pk)
                times.append(time.perf_counter() - t)
            dec = np.asarray(cl.decrypt(er))
            R["eiserver"] = {
                "server_ms_median": statistics.median(times) * 1e3, "server_ms_all": [x * 1e3 for x in times],
                "public_key_bytes": len(pk), "request_bytes": sum(len(c) for c in ect),
                "response_bytes": sum(len(c) for c in er),
                "max_abs_error": float(np.abs(dec - ref[0]).max()),
            }
        except Exception as e:  # pragma: no cover
            R["eiserver"] = {"error": repr(e)}

    # ---------------- table -------------------------------------------------
    s, bk = R["single"], R["bulk"]
    rows = [
        ("server ms / prediction (median)", f"{s['server_ms_median']:.2f}", "<= 15 (stretch 5)"),
        ("request bytes / prediction", f"{s['request_bytes']}", "<= 200 KB (100 KB)"),
        ("response bytes / prediction", f"{s['response_bytes']}", "<= 200 KB (100 KB)"),
        ("keys uploaded once (bytes)", f"{s['public_key_bytes']}", "<= 8 MB (1 MB)"),
        ("bulk server predictions/s (10,000)", f"{bk['server_predictions_per_s']:.0f}", ">= 2000 (5000)"),
        ("digits equal plaintext (bulk, 10,000)", f"{bk['digits_equal']}/{bk['rows']}", "100 %"),
        ("max abs error (bulk, 10,000)", f"{bk['max_abs_error']:.2e}", "<= 1e-3"),
        (f"max abs error / digits (single, {s['rows_checked']})", f"{s['max_abs_error']:.2e} / {s['digit_agreement']*100:.1f}%", "<= 1e-3 / 100 %"),
        ("client keygen / encrypt / decrypt ms (row)",
         f"{s['client_keygen_ms']:.1f} / {s['client_encrypt_ms']:.2f} / {s['client_decrypt_ms']:.2f}", ""),
        ("client bulk encrypt / decrypt s (10,000)", f"{bk['client_encrypt_s']:.2f} / {bk['client_decrypt_s']:.2f}", ""),
        ("bulk request / response bytes per row",
         f"{bk['request_bytes_total']/bk['rows']:.0f} / {bk['response_bytes_total']/bk['rows']:.0f}", ""),
        ("security: total modulus bits / HES max", f"{R['security_single']['total_bits']} / {R['security_single']['hes_max']}", "128-bit"),
    ]
    if "eiserver" in R and "server_ms_median" in R["eiserver"]:
        e = R["eiserver"]
        rows += [
            ("EIServer 0.9 server ms / prediction", f"{e['server_ms_median']:.1f}", ""),
            ("EIServer keys / request / response bytes", f"{e['public_key_bytes']} / {e['request_bytes']} / {e['response_bytes']}", ""),
            ("speed-up vs EIServer (server, 1 row)", f"{e['server_ms_median'] / s['server_ms_median']:.0f}x", ""),
        ]
    w = max(len(r[0]) for r in rows)
    print(f"{'figure':<{w}}  {'measured':>26}  target")
    for a, m_, t_ in rows:
        print(f"{a:<{w}}  {m_:>26}  {t_}")
    with open(args.json, "w") as f:
        json.dump(R, f, indent=2)
    print("json:", args.json)


if __name__ == "__main__":
    main()
