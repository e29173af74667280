"""Serving compiled models in process: exact answers, key handling, and hostile input."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from conftest import concrete_model, write_config

from sei_framework import Deployment, InvalidRequest, SeiError, key_id_for
from sei_framework.serving import ScoringService

MODELS = ("tree", "forest", "boosted", "logistic", "mlp", "tree_regressor", "compiled_network", "forest_labels",
          "compiled_logistic")
ROWS = 3


@pytest.fixture(scope="module")
def service(trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("concrete-service")
    models = [concrete_model(trained, name, **trained.expected[name]["options"]) for name in MODELS]
    build = Deployment.from_file(write_config(folder, models)).build(folder / "build")
    return ScoringService.from_build(build.path)


class KeyedClient:
    """An adapter client with its own fresh keys, and requests that carry its public keys once."""

    def __init__(self, service, name):
        self.service, self.name = service, name
        self.client = service.adapters[name].client(service.describe()["models"][name])
        secret, self.public = self.client.generate_keys()
        self.client.use_keys(secret, self.public)
        self.key_id, self.sent, self.republished = key_id_for(self.public), False, 0

    def ask(self, data, public=None):
        body = {"model": self.name, "key_id": self.key_id, "data": data}
        if not self.sent or public is not None:
            body["public_keys"] = base64.b64encode(public or self.public).decode("ascii")
        answer, status = self.service.handle(json.dumps(body))
        if status == 404 and "public_keys" not in body:  # evicted from the key cache: publish again, as Client does
            self.sent, self.republished = False, self.republished + 1
            return self.ask(data)
        self.sent = self.sent or status == 200
        return answer, status

    def predict(self, rows):
        answer, status = self.ask(self.client.encrypt(rows))
        assert status == 200, answer
        return self.client.interpret(self.client.decrypt(answer["result"], len(rows)))


@pytest.mark.parametrize("name", MODELS)
def test_encrypted_predictions_are_concrete_mls_simulated_ones(service, trained, name):
    keyed = KeyedClient(service, name)
    first = keyed.predict(trained.X[:ROWS])
    expected = np.asarray(trained.expected[name]["simulated"][:ROWS])
    if name == "tree_regressor":
        np.testing.assert_allclose(first.predictions, expected, rtol=1e-9)
        assert first.probabilities is None
    else:
        assert first.predictions.tolist() == expected.tolist()
        assert first.probabilities.shape == (ROWS, 2)
        if name not in ("boosted", "compiled_network"):  # two outputs: a sigmoid each, as Concrete ML reads them
            np.testing.assert_allclose(first.probabilities.sum(axis=1), 1.0, atol=1e-9)
        classes = np.asarray(service.describe()["models"][name]["classes"])
        assert first.predictions.tolist() == classes[np.argmax(first.probabilities, axis=1)].tolist()
    again = keyed.predict(trained.X[ROWS : ROWS + 1])  # the keys stay with the service: this request has none
    assert again.predictions.tolist() == np.asarray(trained.expected[name]["simulated"][ROWS : ROWS + 1]).tolist()
    assert keyed.republished == 0


def test_a_forest_answers_one_sum_never_one_output_per_tree(service, trained):
    described = service.describe()["models"]["forest"]
    assert described["encryption"]["trees_summed_under_encryption"] is True
    keyed = KeyedClient(service, "forest")
    answer, status = keyed.ask(keyed.client.encrypt(trained.X[:1]))
    assert status == 200
    from concrete import fhe

    value = keyed.client._client.decrypt(fhe.Value.deserialize(base64.b64decode(answer["result"][0])))
    assert np.asarray(value).shape == (1, 2)  # two classes, not 4 trees x 2 classes


def test_the_client_needs_nothing_but_the_description_and_checks_it(service):
    from sei_adapter_concrete.client import ConcreteClient

    described = service.describe()["models"]["tree"]
    assert set(described) >= {"client_specs", "circuit", "key_scheme", "quantization", "classes"}
    assert "calibration" not in json.dumps(described)  # no training rows leave the build
    tampered = {**described, "client_specs": base64.b64encode(b"{}").decode()}
    with pytest.raises(Exception, match="client specs are not those of the circuit"):
        ConcreteClient(tampered)


def test_hostile_keys_and_ciphertexts_get_errors_and_honest_clients_keep_their_answers(service, trained):
    honest = KeyedClient(service, "tree")
    assert honest.predict(trained.X[:1]).predictions.tolist() == trained.expected["tree"]["simulated"][:1]
    trusted_pid = service.adapters["tree"].engine_pids()["trusted"]

    garbage = np.random.default_rng(0).bytes(len(honest.public))  # the right size, random bytes
    attacker = KeyedClient.__new__(KeyedClient)
    attacker.service, attacker.name, attacker.client, attacker.sent, attacker.republished = service, "tree", honest.client, False, 0
    attacker.key_id, attacker.public = key_id_for(garbage), garbage
    answer, status = attacker.ask(honest.client.encrypt(trained.X[:1]))
    assert status == 400 and answer["error"]["code"] == "invalid_keys", answer

    short = garbage[:1000]
    attacker.key_id, attacker.public, attacker.sent = key_id_for(short), short, False
    answer, status = attacker.ask(honest.client.encrypt(trained.X[:1]))
    assert status == 400 and "bytes, not 1000" in answer["error"]["message"]

    # well-formed keys of another circuit: Concrete's runtime may crash on them; only probation may
    other = KeyedClient(service, "tree")
    foreign = service.adapters["forest"].client(service.describe()["models"]["forest"]).generate_keys()[1]
    assert len(foreign) == len(other.public)  # same key parameters: the size check cannot tell them apart
    other.key_id, other.public = key_id_for(foreign), foreign
    answer, status = other.ask(other.client.encrypt(trained.X[:1]))
    assert status in (200, 400), answer  # a wrong answer for the attacker alone, or an error

    for data in ({"n_features": 10, "rows": ["not base64!"]}, {"n_features": 10, "rows": [base64.b64encode(b"x" * 900).decode()]},
                 {"n_features": 9, "rows": ["AAAA"]}, {"rows": []}, "text"):  # fmt: skip
        answer, status = honest.ask(data)
        assert status == 400 and answer["error"]["code"] in ("invalid_data", "invalid_ciphertext", "wrong_features", "rejected_input"), answer
    assert honest.predict(trained.X[1:2]).predictions.tolist() == trained.expected["tree"]["simulated"][1:2]
    assert service.adapters["tree"].engine_pids()["trusted"] == trusted_pid  # nothing hostile reached it


def test_a_ciphertext_of_another_circuit_sent_with_proven_keys_leaves_the_trusted_engine_serving(service, trained):
    """Issue 16: well-formed ciphertexts of every other served circuit, from a client whose keys are
    proven, get an answer or an error; the trusted engine (everyone's expanded keys) stays up."""
    honest = KeyedClient(service, "tree")
    assert honest.predict(trained.X[:1]).predictions.tolist() == trained.expected["tree"]["simulated"][:1]
    attacker = KeyedClient(service, "tree")
    attacker.predict(trained.X[:1])  # its keys are proven: from now on the trusted engine runs them
    trusted_pid = service.adapters["tree"].engine_pids()["trusted"]
    for name in MODELS[1:]:
        foreign = service.adapters[name].client(service.describe()["models"][name])
        foreign.use_keys(*foreign.generate_keys())
        answer, status = attacker.ask(foreign.encrypt(trained.X[:1]))
        assert status in (200, 400), answer
        assert service.adapters["tree"].engine_pids()["trusted"] == trusted_pid, f"a ciphertext of {name} took the trusted engine down"
    assert honest.predict(trained.X[1:2]).predictions.tolist() == trained.expected["tree"]["simulated"][1:2]
    assert service.adapters["tree"].engine_pids()["trusted"] == trusted_pid  # (the key cache may still evict
    # the honest keys under this module's many key sets: KeyedClient then publishes them again)


def test_a_ciphertext_that_is_not_of_this_circuits_type_never_reaches_an_engine(service, trained):
    """Every ciphertext of a circuit repeats the same bytes around its encrypted words (the value's
    type); the worker refuses any other before an engine, and everyone's keys, could see it."""
    honest = KeyedClient(service, "tree")
    assert honest.predict(trained.X[:1]).predictions.tolist() == trained.expected["tree"]["simulated"][:1]
    trusted_pid = service.adapters["tree"].engine_pids()["trusted"]
    blob = base64.b64decode(honest.client.encrypt(trained.X[:1])["rows"][0])
    retyped = bytearray(blob)
    retyped[8] ^= 1  # the value's type, outside its encrypted words: not this circuit's
    answer, status = honest.ask({"n_features": 10, "rows": [base64.b64encode(bytes(retyped)).decode()]})
    assert status == 400 and answer["error"]["code"] == "invalid_ciphertext", answer
    assert "was not made for this model's circuit" in answer["error"]["message"]
    longer = base64.b64encode(blob + b"\0" * 8).decode()  # Concrete would read it, ignoring the tail
    answer, status = honest.ask({"n_features": 10, "rows": [longer]})
    assert status == 400 and answer["error"]["code"] == "invalid_ciphertext", answer
    assert f"is {len(blob) + 8} bytes; this model's are {len(blob)}" in answer["error"]["message"]
    assert honest.predict(trained.X[1:2]).predictions.tolist() == trained.expected["tree"]["simulated"][1:2]
    assert service.adapters["tree"].engine_pids()["trusted"] == trusted_pid


def test_a_forest_with_string_labels_is_served_with_its_labels(service, trained):
    """HEAD: "Random Forest Classifier translation only supports integer class labels" at build."""
    assert service.describe()["models"]["forest_labels"]["classes"] == ["benign", "malignant"]
    got = KeyedClient(service, "forest_labels").predict(trained.X[:ROWS]).predictions.tolist()
    assert got == trained.expected["forest_labels"]["simulated"][:ROWS]
    assert set(got) <= {"benign", "malignant"}


@pytest.mark.parametrize("name", ["tree", "logistic", "mlp"])
def test_rows_outside_the_compiled_range_are_refused_not_clipped(service, trained, name):
    """HEAD clipped them into the calibration range silently and answered for other inputs."""
    client = service.adapters[name].client(service.describe()["models"][name])
    calibration = np.load(trained.calibration)
    rows = trained.X[:3].copy()
    rows[1, 4] = calibration[:, 4].max() + np.ptp(calibration[:, 4])
    with pytest.raises(InvalidRequest, match="row 1, feature 4: outside the range the model was compiled for") as caught:
        client.encrypt(rows)
    assert caught.value.code == "input_out_of_bounds"
    client.check_range(calibration)  # the calibration rows themselves are inside


@pytest.mark.parametrize("name", ["tree", "forest", "boosted", "logistic", "forest_labels"])
def test_probabilities_were_checked_against_concrete_mls_predict_proba(service, name):
    checked = service.describe()["models"][name]["agreement"]["probabilities"]
    assert checked["rows"] == 400 and checked["max_difference"] <= checked["tolerance"] == 1e-6


def test_probabilities_that_differ_from_concrete_mls_are_refused():
    from sei_adapter_concrete.adapter import check_probabilities

    scores = np.array([[0.25, 0.75], [0.5, 0.5]])
    check_probabilities(scores, "none", scores.tolist(), "m")
    with pytest.raises(SeiError, match="differ from Concrete ML's predict_proba by up to 0.01"):
        check_probabilities(scores, "none", (scores + [[0.01, -0.01], [0, 0]]).tolist(), "m")


def test_a_compiled_model_without_class_labels_is_refused(trained, tmp_path):
    """HEAD labelled it 0..k-1, and its check compared SEI's arithmetic with itself."""
    with pytest.raises(SeiError, match=r"has no class labels \(classes_\): give them, .* `classes` option"):
        Deployment.from_file(write_config(tmp_path, [concrete_model(trained, "compiled_logistic")])).build(tmp_path / "b")
