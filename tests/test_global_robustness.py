"""The global-robustness cascade and sampler against independent oracles.

- Per-sample verdicts of the cascade agree with the exact MILP alone (verify with interval
  bounds and no attack), and every counterexample passed the float64 re-check.
- On a linear case where the probability is known in closed form, the interval covers it,
  in a single run and with the nominal frequency over repeated runs.
- Unknowns widen the interval; stopping early keeps the spent confidence; a crashed run
  resumes to exactly the uninterrupted result.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

import exactverify as ev
from exactverify import InvalidInputError, VerdictStatus, verify
from exactverify.campaign.store import StoreError
from exactverify.compose import compose
from exactverify.globalrob.cascade import Cascade, CascadeOptions, SampleStatus
from exactverify.globalrob.intervals import look_confidence, widened_interval
from exactverify.globalrob.latent import latent_stream, sample_latent
from exactverify.globalrob.sampler import global_robustness


def tiny_pair(seed: int = 1) -> tuple[nn.Sequential, nn.Sequential, int]:
    """A 3-12-12-8 LeakyReLU generator with Hardtanh output and an 8-10-3 ReLU classifier whose
    output biases are shifted so that the three classes are about equally frequent."""
    torch.manual_seed(seed)
    gen = nn.Sequential(nn.Linear(3, 12), nn.LeakyReLU(0.2), nn.Linear(12, 12), nn.LeakyReLU(0.2),
                        nn.Linear(12, 8), nn.Hardtanh(0.0, 1.0))
    cls = nn.Sequential(nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 3))
    with torch.no_grad():
        out = cls(gen(torch.randn(2000, 3)))
        cls[2].bias -= out.median(0).values
        label = int(cls(gen(torch.randn(1000, 3))).argmax(1).bincount().argmax())
    return gen.double().eval(), cls.double().eval(), label


def linear_pair() -> tuple[nn.Sequential, nn.Sequential]:
    """G(z) = z (1-D) and C(x) = (0, x): class 1 on the whole ball iff z - eps > 0 (up to the margin),
    so P(robust) = 1 - Phi(eps)."""
    gen = nn.Sequential(nn.Linear(1, 1))
    cls = nn.Sequential(nn.Linear(1, 2))
    with torch.no_grad():
        gen[0].weight.fill_(1.0)
        gen[0].bias.zero_()
        cls[0].weight.copy_(torch.tensor([[0.0], [1.0]]))
        cls[0].bias.zero_()
    return gen.double(), cls.double()


@pytest.mark.parametrize("eps", [0.05, 0.25])
def test_cascade_agrees_with_the_exact_milp_alone(eps: float) -> None:
    gen, cls, label = tiny_pair()
    network = compose(gen, cls)
    model = nn.Sequential(gen, cls)
    latents = sample_latent(40, 3, latent_stream(3), dtype=torch.float64)
    outcomes, stats = Cascade(network, label, eps, CascadeOptions(split_boxes=16), model).run(latents)
    assert sum(s.entered for s in stats.values()) >= 40
    expected = {VerdictStatus.ROBUST: SampleStatus.CERTIFIED, VerdictStatus.NOT_ROBUST: SampleStatus.VIOLATED}
    seen = set()
    for z, outcome in zip(latents, outcomes, strict=True):
        oracle = verify(network, z.numpy(), eps, label=label, bounds_method="interval", attack_first=False)
        assert oracle.status != VerdictStatus.UNKNOWN
        assert outcome.status == expected[oracle.status], (outcome, oracle.reason)
        seen.add(outcome.status)
        if outcome.status == SampleStatus.VIOLATED:
            assert outcome.validated and outcome.model_validated
            point = torch.tensor(outcome.counterexample, dtype=torch.float64)
            assert float((point - z).abs().max()) <= eps + 1e-9
            logits = model(point[None])[0]
            assert int(logits.argmax()) != label
    assert seen == {SampleStatus.CERTIFIED, SampleStatus.VIOLATED}


def test_every_stage_keeps_the_verdicts_exact() -> None:
    """With the cheap stages switched off one by one, the verdicts do not change."""
    gen, cls, label = tiny_pair(2)
    network = compose(gen, cls)
    latents = sample_latent(30, 3, latent_stream(5), dtype=torch.float64)
    variants = [CascadeOptions(), CascadeOptions(bounds_method="interval", attack_steps=0, split_batch=1),
                CascadeOptions(split_boxes=0), CascadeOptions(bounds_method="crown", split_boxes=0, attack_steps=0)]
    results = [[o.status for o in Cascade(network, label, 0.15, v).run(latents)[0]] for v in variants]
    assert all(r == results[0] for r in results[1:])
    assert SampleStatus.UNKNOWN not in results[0]


def test_interval_covers_a_known_probability() -> None:
    gen, cls = linear_pair()
    eps = 0.3
    truth = 1 - norm.cdf(eps)
    report = global_robustness(gen, cls, 1, eps, samples=3000, batch_size=1000, seed=11)
    assert report.unknown == 0
    assert report.interval.contains(truth), (report.interval, truth)
    assert report.stages["bounds"].certified + report.stages["attack"].violated + report.stages["centre"].violated \
        == 3000  # linear: the bounds and the attack are exact


def test_interval_coverage_frequency() -> None:
    """Over 40 independent runs a 90% interval misses the truth about 4 times; >= 9 misses
    would happen with probability < 1% if coverage were really 90%."""
    gen, cls = linear_pair()
    eps = 0.5
    truth = 1 - norm.cdf(eps)
    misses = sum(not global_robustness(gen, cls, 1, eps, samples=150, batch_size=150, seed=seed,
                                       confidence=0.9).interval.contains(truth) for seed in range(40))
    assert misses < 9


def test_unknowns_widen_the_interval() -> None:
    gen, cls, label = tiny_pair(3)
    full = global_robustness(gen, cls, label, 0.2, samples=120, batch_size=60, seed=4)
    blind = global_robustness(gen, cls, label, 0.2, samples=120, batch_size=60, seed=4,
                              options=CascadeOptions(bounds_method="interval", attack_steps=0, split_boxes=0,
                                                     exact_time_limit=0))
    assert full.unknown == 0 and blind.unknown > 0
    assert blind.certified <= full.certified and blind.violated <= full.violated
    assert blind.interval.low <= full.interval.low and blind.interval.high >= full.interval.high
    assert blind.interval == widened_interval(blind.certified, blind.violated, blind.unknown)


def test_target_width_stops_early_with_spent_confidence() -> None:
    gen, cls = linear_pair()
    report = global_robustness(gen, cls, 1, 3.0, samples=20000, batch_size=500, target_width=0.01, seed=2)
    assert report.stopped_early and report.samples < 20000
    assert report.interval.width <= 0.01
    assert report.interval.confidence == pytest.approx(look_confidence(0.95, report.looks))


def test_subsample_of_unknowns_gives_an_estimate() -> None:
    gen, cls, label = tiny_pair(3)
    options = CascadeOptions(bounds_method="interval", attack_steps=0, split_boxes=0, exact_time_limit=0)
    report = global_robustness(gen, cls, label, 0.2, samples=80, batch_size=80, seed=4, options=options,
                               subsample_unknowns=10)
    full = global_robustness(gen, cls, label, 0.2, samples=80, batch_size=80, seed=4)
    sub = report.subsample
    assert sub is not None and sub.checked == 10 and sub.unresolved_in_subsample == 0
    assert sub.low <= sub.estimate <= sub.high
    assert report.interval.low <= sub.estimate <= report.interval.high
    assert abs(sub.estimate - full.certified / 80) < 0.3


def test_resume_after_a_crash_loses_nothing(tmp_path) -> None:
    gen, cls, label = tiny_pair(4)
    kwargs = dict(samples=90, batch_size=30, seed=6)
    reference = global_robustness(gen, cls, label, 0.15, **kwargs)
    store = tmp_path / "run.jsonl"
    global_robustness(gen, cls, label, 0.15, store=store, **kwargs)
    lines = store.read_bytes().splitlines(keepends=True)
    kept = lines[:45] + [lines[45][:10]]  # a crash mid-way through the second batch, last line torn
    store.write_bytes(b"".join(kept))
    resumed = global_robustness(gen, cls, label, 0.15, store=store, **kwargs)
    assert (resumed.certified, resumed.violated, resumed.unknown) == \
        (reference.certified, reference.violated, reference.unknown)
    assert store.read_bytes().startswith(b"".join(lines[:45]))  # earlier records byte-identical
    ids = [json.loads(line)["id"] for line in store.read_bytes().splitlines()]
    assert len(ids) == len(set(ids)) and sum(i.isdigit() for i in ids) == 90
    with pytest.raises(StoreError, match="other settings"):
        global_robustness(gen, cls, label, 0.2, store=store, **kwargs)


def test_bad_arguments_are_named() -> None:
    gen, cls, label = tiny_pair()
    network = compose(gen, cls)
    with pytest.raises(InvalidInputError, match="eps"):
        global_robustness(gen, cls, label, -0.1, samples=10)
    with pytest.raises(InvalidInputError, match="samples"):
        global_robustness(gen, cls, label, 0.1, samples=0)
    with pytest.raises(InvalidInputError, match="label"):
        Cascade(network, 7, 0.1)
    with pytest.raises(InvalidInputError, match="label=True is not a class index"):
        Cascade(network, True, 0.1)  # a bool is not taken for class 1
    with pytest.raises(InvalidInputError, match="latents"):
        Cascade(network, label, 0.1).run(torch.zeros(4, 5))
    with pytest.raises(InvalidInputError, match="NaN"):
        Cascade(network, label, 0.1).run(torch.full((2, 3), float("nan")))
    with pytest.raises(InvalidInputError, match="target_width"):
        global_robustness(gen, cls, label, 0.1, samples=10, target_width=1.5)
    with pytest.raises(InvalidInputError, match="split_boxes"):
        CascadeOptions(split_boxes=-1)


def test_a_generator_with_a_latent_domain_is_refused_before_sampling() -> None:
    """The sampler draws z ~ N(0, I) and the cascade decides unclipped balls: a generator that
    declares a latent domain is refused up front (its queries used to fail mid-run, on the
    first draw outside the domain)."""
    gen, cls, label = tiny_pair()
    boxed = ev.load(gen, input_shape=(3,))
    boxed = ev.Network(boxed.input_shape, boxed.layers, (np.full(3, -1.0), np.full(3, 1.0)), name="boxed")
    with pytest.raises(InvalidInputError, match="boxed declares an input \\(latent\\) domain"):
        global_robustness(boxed, cls, label, 0.1, samples=50)
    with pytest.raises(InvalidInputError, match="latent"):
        Cascade(compose(boxed, cls), label, 0.1)


def test_cascade_device_is_validated_when_the_options_are_made(monkeypatch) -> None:
    with pytest.raises(InvalidInputError, match="device must be a torch device.*'foo'"):
        CascadeOptions(device="foo")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidInputError, match=r"device='cuda' asks for CUDA.*is_available\(\) is False"):
        CascadeOptions(device="cuda")
    assert CascadeOptions(device="cpu").device == "cpu"


def test_latent_stream_is_reproducible() -> None:
    a = sample_latent(5, 3, latent_stream(9))
    b = sample_latent(5, 3, latent_stream(9))
    assert torch.equal(a, b) and not torch.equal(a, sample_latent(5, 3, latent_stream(10)))
    assert np.isclose(float(sample_latent(20000, 1, latent_stream(0)).std()), 1.0, atol=0.03)


def test_command_line_reports_and_resumes(tmp_path, capsys) -> None:
    from exactverify.cli import main

    store, out = tmp_path / "run.jsonl", tmp_path / "report.json"
    argv = ["global-robustness", "--generator", "digits8:3", "--classifier", "digits8:small", "--label", "3",
            "--eps", "0.05", "--samples", "200", "--batch-size", "100", "--store", str(store), "--json", str(out)]
    assert main(argv) == 0
    first = json.loads(out.read_text())
    assert first["certified"] + first["violated"] + first["unknown"] == 200
    assert first["interval"]["low"] <= first["certified"] / 200
    assert main(argv) == 0  # everything is in the store: the rerun only reads it
    assert json.loads(out.read_text())["certified"] == first["certified"]
    assert main(["global-robustness", "--generator", "digits8:3", "--classifier", "digits8:tiny", "--label", "3",
                 "--eps", "0.05"]) == 2
    assert "capacity" in capsys.readouterr().err


def test_cascade_agrees_with_the_exact_milp_on_the_committed_digits8_models() -> None:
    """The project's own tiny generator (latent 4 -> 32 -> 64 -> 64, Hardtanh) and classifier."""
    from exactverify.generative.models import load_classifier, load_generator

    gen, cls = load_generator(3, "digits8").double(), load_classifier("small", False, "digits8").double()
    network, model = compose(gen, cls), nn.Sequential(gen, cls)
    latents = sample_latent(12, network.input_size, latent_stream(21), dtype=torch.float64)
    eps = 0.3
    outcomes, _ = Cascade(network, 3, eps, CascadeOptions(split_boxes=32), model).run(latents)
    expected = {VerdictStatus.ROBUST: SampleStatus.CERTIFIED, VerdictStatus.NOT_ROBUST: SampleStatus.VIOLATED}
    stages = set()
    for z, outcome in zip(latents, outcomes, strict=True):
        oracle = verify(network, z.numpy(), eps, label=3, bounds_method="crown", attack_first=False)
        assert oracle.status != VerdictStatus.UNKNOWN
        assert outcome.status == expected[oracle.status], (outcome, oracle.reason)
        stages.add(outcome.stage)
    assert {"bounds", "split"} <= stages  # the cheap stages are exercised, not only the MILP


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpu_verdicts() -> None:
    gen, cls, label = tiny_pair(2)
    network = compose(gen, cls)
    latents = sample_latent(40, 3, latent_stream(8), dtype=torch.float64)
    cpu = [o.status for o in Cascade(network, label, 0.15, CascadeOptions()).run(latents)[0]]
    gpu = [o.status for o in Cascade(network, label, 0.15, CascadeOptions(device="cuda")).run(latents)[0]]
    assert cpu == gpu and SampleStatus.UNKNOWN not in cpu
