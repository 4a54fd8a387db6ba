"""The onnxruntime engine's two sessions: batches under load on one that never spins, a lone request on one whose
threads spin within the batch; both give the same numbers."""

from __future__ import annotations

import numpy as np
import pytest

from labelserve.bundle import Bundle
from service.engines import create_engine
from service.engines.base import LoneBatchEngine
from service.engines.onnxruntime import OnnxRuntimeEngine


def _loaded(bundle: Bundle, **options: object) -> OnnxRuntimeEngine:
    engine = create_engine(bundle, max_batch_size=4, execution_providers=["cpu"], **options)  # type: ignore[arg-type]
    assert isinstance(engine, OnnxRuntimeEngine)
    engine.load()
    return engine


def test_the_lone_session_spins_within_a_batch_and_gives_the_batch_sessions_numbers(tiny_bundle: Bundle) -> None:
    engine = _loaded(tiny_bundle)
    assert isinstance(engine, LoneBatchEngine)
    assert engine.has_lone_session
    assert engine.session_options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    lone_options = engine._lone.get_session_options()  # type: ignore[union-attr]
    assert lone_options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert lone_options.get_session_config_entry("session.force_spinning_stop") == "1"  # and stop after it
    image = np.random.default_rng(0).standard_normal((1, *tiny_bundle.manifest.input.shape), dtype=np.float32)
    names = ["logits", "attention"] if tiny_bundle.manifest.outputs.attention is not None else ["logits"]
    batch, lone = engine.run(image, names), engine.run_lone(image, names)
    assert set(lone) == set(names)
    for name in names:
        np.testing.assert_allclose(lone[name], batch[name], rtol=1e-5, atol=1e-6)
    engine.close()
    assert not engine.has_lone_session


@pytest.mark.parametrize("options", [{"lone_session": False}, {"intra_op_spinning": True}, {"intra_op_threads": 1}],
                         ids=["switched off", "the batch session spins already", "no thread pool to spin"])
def test_no_lone_session_where_it_would_gain_nothing(tiny_bundle: Bundle, options: dict[str, object]) -> None:
    engine = _loaded(tiny_bundle, **options)
    assert not engine.has_lone_session
    image = np.zeros((1, *tiny_bundle.manifest.input.shape), dtype=np.float32)
    np.testing.assert_array_equal(engine.run_lone(image, ["logits"])["logits"], engine.run(image, ["logits"])["logits"])
