"""MLFOObjective: the weighted total, ablation switches, schedule, queue state, config."""

import dataclasses

import pytest
import torch

from loss_dist_worker import TinyMLFO, objective_config, objective_inputs
from mlfo.config import build
from mlfo.errors import MLFOError
from mlfo.losses import MLFOObjective, ObjectiveConfig, motion_contrast

EPOCH = 5  # queue (from 3) and graph (from 4) both on in objective_config()


def evaluate(cfg=None, epoch=EPOCH, out=None, steps=1, **model_kwargs):
    """Fresh objective; `steps` batches (the last is returned) so the queue can fill."""
    objective = MLFOObjective(cfg or objective_config(), num_prototypes=7)
    model = TinyMLFO()
    for x in objective_inputs(8, steps=steps):
        total, logs = objective(out if out is not None else model(x, **model_kwargs), epoch)
    return total, logs, objective


def test_total_is_the_reference_formula():
    total, logs, _ = evaluate(steps=2)
    formula = (logs["loss/high"] + logs["loss/fine_high"]
               + logs["loss/graph_high"] + 0.5 * logs["loss/graph_mid"] + 0.3 * logs["loss/graph_low"]
               + 0.5 * (logs["loss/mid"] + logs["loss/fine_mid"])
               + 0.3 * (logs["loss/low"] + logs["loss/fine_low"])
               + 0.5 * logs["loss/proto"])
    assert total.item() == pytest.approx(formula, rel=1e-12)
    assert logs["loss/total"] == pytest.approx(total.item(), rel=1e-12)
    for name in ("acc/high", "acc/low", "acc/mid", "acc/fine_low", "acc/fine_mid", "acc/fine_high"):
        assert 0.0 <= logs[name] <= 1.0
    assert all(isinstance(v, float) for v in logs.values())


SWITCHES = {  # switch -> (log term, weight in the default config)
    "instance": ("loss/high", 1.0),
    "prototypes": ("loss/proto", 0.5),
    "motion_low": ("loss/low", 0.3),
    "motion_mid": ("loss/mid", 0.5),
    "timestamp_low": ("loss/fine_low", 0.3),
    "timestamp_mid": ("loss/fine_mid", 0.5),
    "timestamp_high": ("loss/fine_high", 1.0),
    "graph_low": ("loss/graph_low", 0.3),
    "graph_mid": ("loss/graph_mid", 0.5),
    "graph_high": ("loss/graph_high", 1.0),
}


@pytest.mark.parametrize("switch", sorted(SWITCHES))
def test_each_switch_removes_exactly_its_term(switch):
    term, weight = SWITCHES[switch]
    total, logs, _ = evaluate(steps=2)
    off_total, off_logs, _ = evaluate(objective_config(**{switch: False}), steps=2)
    assert term not in off_logs
    assert off_total.item() == pytest.approx(total.item() - weight * logs[term], rel=1e-10, abs=1e-12)
    for name, value in off_logs.items():  # every other term unchanged
        if name.startswith("loss/") and name != "loss/total":
            assert value == pytest.approx(logs[name], rel=1e-10)


def test_reversed_negatives_switch_and_model_without_reversed_clips():
    total, logs, _ = evaluate()
    off_total, off_logs, _ = evaluate(objective_config(reversed_negatives=False))
    # The objective asks for reversed clips the model did not make: refused, never a silent
    # ablation (the method builds the model from the objective's one switch).
    with pytest.raises(MLFOError, match=r"objective\.reversed_negatives: on, but the model output has no reversed"):
        evaluate(reversed_negatives=False)
    model = TinyMLFO()
    out = model(objective_inputs(8)[0])
    plain_low, _ = motion_contrast(out.clip["low"][0], out.clip["low"][1], tau=0.07)
    assert off_logs["loss/low"] == pytest.approx(plain_low.item(), rel=1e-12)
    assert off_logs["loss/low"] < logs["loss/low"] and off_logs["loss/mid"] < logs["loss/mid"]
    expected = (total.item() - 0.3 * (logs["loss/low"] - off_logs["loss/low"])
                - 0.5 * (logs["loss/mid"] - off_logs["loss/mid"]))
    assert off_total.item() == pytest.approx(expected, rel=1e-10)
    assert objective_config(reversed_negatives=False).uses_reversed_clips() is False
    assert objective_config(motion_low=False, motion_mid=False).uses_reversed_clips() is False
    assert objective_config().uses_reversed_clips() is True


def test_reversed_negatives_start_and_source_switches():
    _, logs, _ = evaluate()
    _, plain_logs, _ = evaluate(objective_config(reversed_negatives=False))
    # before reversed_negatives_start the motion contrast has no reversed clips
    _, early, _ = evaluate(objective_config(reversed_negatives_start=EPOCH + 1))
    _, on_time, _ = evaluate(objective_config(reversed_negatives_start=EPOCH))
    assert early["loss/low"] == pytest.approx(plain_logs["loss/low"], rel=1e-12)
    assert on_time["loss/low"] == pytest.approx(logs["loss/low"], rel=1e-12)
    # one reversed negative instead of two: between plain and the reference
    _, positive, _ = evaluate(objective_config(reversed_negative_source="positive"))
    for level in ("low", "mid"):
        assert plain_logs[f"loss/{level}"] < positive[f"loss/{level}"] < logs[f"loss/{level}"]
    with pytest.raises(MLFOError, match="reversed_negative_source"):
        objective_config(reversed_negative_source="nope")
    with pytest.raises(MLFOError, match="reversed_negatives_start"):
        objective_config(reversed_negatives_start=-1)


def test_switched_off_components_do_no_work():
    """Components that are off never touch their inputs (here: removed from the output)."""
    out = TinyMLFO()(objective_inputs(8)[0])
    out.fine = {}
    out.graph = {}
    cfg = objective_config(timestamp_low=False, timestamp_mid=False, timestamp_high=False,
                           graph_low=False, graph_mid=False, graph_high=False)
    total, logs, objective = evaluate(cfg, out=out)
    assert not any("fine" in name or "graph" in name for name in logs)
    assert torch.isfinite(total)
    out = TinyMLFO()(objective_inputs(8)[0])
    out.graph, out.proto_scores = {}, None
    cfg = objective_config(prototypes=False, graph_start=100)
    total, logs, objective = evaluate(cfg, out=out)
    assert "loss/proto" not in logs and int(objective.queue.count) == 0  # no codes, no queue


def test_schedule_graph_and_queue():
    before, logs_before, objective = evaluate(epoch=2)  # queue from 3, graph from 4
    assert not any(name.startswith("loss/graph") for name in logs_before)
    assert int(objective.queue.count) == 0 and not objective.graph_active(2)
    _, logs_after, objective = evaluate(epoch=4, steps=2)
    assert {"loss/graph_low", "loss/graph_mid", "loss/graph_high"} <= set(logs_after)
    assert int(objective.queue.count) == 12 and logs_after["queue/size"] == 12
    assert objective.prototypes_frozen(0) and not objective.prototypes_frozen(1)

    out = TinyMLFO()(objective_inputs(8)[0])
    out.graph = {}
    with pytest.raises(MLFOError, match="objective.graph_start"):
        evaluate(out=out)


def test_graph_memory_gives_neighbours_beyond_the_batch_and_resumes():
    model = TinyMLFO()
    steps = objective_inputs(8, steps=3)
    cfg = objective_config(graph_memory=16, graph_threshold=0.0)  # keep every same-cluster entry
    objective = MLFOObjective(cfg, num_prototypes=7)
    reference = MLFOObjective(objective_config(graph_threshold=0.0), num_prototypes=7)
    for x in steps:
        out = model(x)
        _, logs = objective(out, EPOCH)
        _, ref_logs = reference(out, EPOCH)
    assert "graph_memory.embeddings" not in reference.state_dict()  # default: no new state
    assert logs["graph/memory_size"] == 16 and int(objective.graph_memory.count) == 16
    assert logs["graph/neighbours"] > ref_logs["graph/neighbours"]
    assert logs["graph/neighbours_memory"] == pytest.approx(logs["graph/neighbours"] - ref_logs["graph/neighbours"])
    state = objective.state_dict()
    assert state["graph_memory.embeddings"].shape == (1, 16, 4 * 5 + 1)  # z_B + 3 graph levels + label
    resumed = MLFOObjective(cfg, num_prototypes=7)
    resumed.load_state_dict(state)
    torch.testing.assert_close(resumed.graph_memory.valid(), objective.graph_memory.valid())
    # an empty memory (first graph step) is the reference objective
    first = model(steps[0])
    fresh, _ = MLFOObjective(cfg, num_prototypes=7)(first, EPOCH)
    plain, _ = MLFOObjective(objective_config(graph_threshold=0.0), num_prototypes=7)(first, EPOCH)
    assert fresh.item() == pytest.approx(plain.item(), rel=1e-9)


def test_queue_changes_codes_and_is_in_the_state_dict():
    model = TinyMLFO()
    first, second = objective_inputs(8, steps=2)
    objective = MLFOObjective(objective_config(), num_prototypes=7)
    objective(model(first), EPOCH)
    state = objective.state_dict()
    assert set(state) == {"queue.embeddings", "queue.count"} and int(state["queue.count"]) == 8
    assert state["queue.embeddings"].shape == (2, 12, 5)  # embeddings (C = 5), not scores

    resumed = MLFOObjective(objective_config(), num_prototypes=7)
    resumed.load_state_dict(state)
    with_queue, _ = objective(model(second), EPOCH)
    resumed_total, _ = resumed(model(second), EPOCH)
    assert resumed_total.item() == pytest.approx(with_queue.item(), rel=1e-12)
    fresh_total, _ = MLFOObjective(objective_config(), num_prototypes=7)(model(second), EPOCH)
    assert fresh_total.item() != pytest.approx(with_queue.item(), rel=1e-9)


def test_config_validation_names_the_key():
    for key, value in [("tau", 0.0), ("proto_tau", -1.0), ("sinkhorn_iters", 0),
                       ("queue_length", -1), ("graph_threshold", 1.5), ("weight_low", -0.1),
                       ("graph_reduction", "sum")]:
        with pytest.raises(MLFOError, match=f"objective.{key}"):
            ObjectiveConfig(**{key: value})
    with pytest.raises(MLFOError, match="objective.temperature: unknown"):
        build(ObjectiveConfig, {"temperature": 0.1}, where="objective")
    with pytest.raises(MLFOError, match="every loss component"):
        off = {f.name: False for f in dataclasses.fields(ObjectiveConfig)
               if f.type in (bool, "bool")}
        evaluate(ObjectiveConfig(**off))
    with pytest.raises(MLFOError, match="prototypes"):
        MLFOObjective(objective_config(), num_prototypes=9)(TinyMLFO()(objective_inputs(8)[0]), 0)


def test_graph_reduction_setting():
    _, reference, _ = evaluate()
    _, per_anchor, _ = evaluate(objective_config(graph_reduction="per_anchor"))
    for level in ("low", "mid", "high"):  # reference = per_anchor / global batch (8)
        assert reference[f"loss/graph_{level}"] == pytest.approx(per_anchor[f"loss/graph_{level}"] / 8,
                                                                  rel=1e-10)


def test_every_component_reachable_from_mlfo_model():
    from mlfo.models import MLFOModel, ModelConfig, build_backbone

    torch.manual_seed(0)
    model = MLFOModel(build_backbone("r3d_small"), ModelConfig(num_prototypes=10))
    objective = MLFOObjective(ObjectiveConfig(queue_start=0, graph_start=0, queue_length=8),
                              num_prototypes=10)
    model.normalize_prototypes()
    out = model(torch.randn(3, 3, 3, 16, 16, 16), with_graph=objective.graph_active(0))
    total, logs = objective(out, epoch=0)
    total.backward()
    assert torch.isfinite(total)
    assert len([k for k in logs if k.startswith("loss/")]) == 11  # 10 terms + total
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert missing == []
