"""The planner: published Megatron-LM throughputs, Korthikanti's activation formulas, memory and
energy bookkeeping, serving, search, bad input, and the command lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from picojoule.cluster.models import from_hf_config, load_model, model_presets
from picojoule.cluster.plan import (
    Assumptions,
    ParallelPlan,
    ServingPlan,
    pareto_front,
    plan_serving,
    plan_training,
    search_plans,
)
from picojoule.cluster.topology import system
from picojoule.errors import ConfigError

DGX_A100 = system("dgx-a100")
DGX_H100 = system("dgx-h100")


def _megatron_plan(tp: int, pp: int, batch: int, **kw) -> ParallelPlan:
    base = dict(tp=tp, pp=pp, micro_batch=1, global_batch=batch, seq_len=2048,
                recompute="full", flash_attention=False, overlap_grad_reduce=False,
                math_format="fp16")  # fmt: skip
    return ParallelPlan(**{**base, **kw})


def _megatron_flops(name: str, batch: int, s: int = 2048) -> float:
    """Narayanan et al. (SC21) eq. (3): F = 96 B s l h^2 (1 + s/6h + V/16lh), with
    activation recomputation."""
    m = load_model(name)
    l, h, v = m.layers, m.hidden, m.vocab
    return 96 * batch * s * l * h * h * (1 + s / (6 * h) + v / (16 * l * h))


@pytest.mark.parametrize(
    ("model", "tp", "pp", "gpus", "batch", "published"),
    [
        ("megatron-1.7b", 1, 1, 32, 512, 137),
        ("megatron-18b", 8, 1, 256, 1024, 135),
        ("megatron-146b", 8, 8, 1536, 2304, 148),
        ("megatron-530b", 8, 35, 2520, 2520, 163),
        ("megatron-1t", 8, 64, 3072, 3072, 163),
    ],
)
def test_narayanan_sc21_table1(model, tp, pp, gpus, batch, published) -> None:
    """Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using
    Megatron-LM", SC21, Table 1 (weak scaling on Selene, DGX A100 80GB, 8 HDR NICs per node):
    achieved teraFLOP/s per GPU, counted with their eq. (3) - 1.7B on 32 GPUs 137 (44% of
    312), 18.4B on 256 GPUs 135 (43%), 145.6B on 1536 GPUs 148 (47%), 529.6B on 2520 GPUs 163
    (52%), 1008B on 3072 GPUs 163 (52%; 502 PFLOP/s aggregate). Vocabulary 51200, sequence
    2048, fp16, activation recomputation (their FLOP formula assumes it).

    Assumed here (the paper does not tabulate them): micro-batch 1, no interleaving, no flash
    attention (2021), data-parallel gradient all-reduce after the pipeline flush (not
    overlapped), GEMMs at 0.72 of the dense peak (`Assumptions.math_efficiency`, one constant for
    all 13 points of this file: a calibration, so this test checks that one constant and the
    communication/bubble model reproduce 1.7B-1T on 32-3072 GPUs; 0.60-0.86 also pass).
    The planner's step time is converted to teraFLOP/s with the paper's own formula."""
    est = plan_training(load_model(model), DGX_A100, gpus, _megatron_plan(tp, pp, batch))
    tflops = _megatron_flops(model, batch) / (gpus * est.step_time_s) / 1e12
    assert abs(tflops / published - 1) < 0.20, f"{tflops:.1f} vs {published}"


@pytest.mark.parametrize(
    ("model", "pp", "gpus", "batch", "mb", "v", "full_s", "selective_s"),
    [
        ("megatron-22b", 1, 8, 4, 4, 1, 1.42, 1.10),
        ("megatron-175b", 8, 64, 64, 1, 3, 18.13, 13.75),
        ("megatron-530b", 35, 280, 280, 1, 3, 49.05, 37.83),
        ("megatron-1t", 64, 512, 512, 1, 1, 94.42, 71.49),
    ],
)
def test_korthikanti_2022_iteration_times(model, pp, gpus, batch, mb, v, full_s, selective_s):
    """Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models"
    (arXiv 2205.05198), end-to-end iteration times on A100 80GB with tensor parallel 8: full
    recomputation vs sequence parallel + selective recomputation - 22B 1.42/1.10 s, GPT-3 175B
    18.13/13.75 s, 530B 49.05/37.83 s, 1T 94.42/71.49 s. Configurations (global batch, micro-
    batch, interleaving) as the Calculon validation files reproduce them (calculon-ai/calculon,
    validation/*_full.json, *_seqsel.json); data parallel 1. Same assumptions as above."""
    m = load_model(model)
    for recompute, sp, published in (("full", False, full_s), ("selective", True, selective_s)):
        p = _megatron_plan(8, pp, batch, micro_batch=mb, virtual_stages=v, recompute=recompute,
                           sequence_parallel=sp)  # fmt: skip
        got = plan_training(m, DGX_A100, gpus, p).step_time_s
        assert abs(got / published - 1) < 0.20, f"{recompute}: {got:.2f} s vs {published}"


def test_hardware_flops_match_megatrons_formula() -> None:
    """With full recomputation and no flash attention the planner executes exactly eq. (3)."""
    est = plan_training(load_model("megatron-18b"), DGX_A100, 256, _megatron_plan(8, 1, 1024))
    assert est.hardware_flops == pytest.approx(_megatron_flops("megatron-18b", 1024), rel=1e-3)
    assert est.model_flops == pytest.approx(est.hardware_flops * 3 / 4, rel=0.01)
    assert est.mfu < est.hfu


def test_korthikanti_activation_formulas() -> None:
    """Section 4 of Korthikanti et al.: bytes per layer sbh(34 + 5as/h); tensor parallel
    sbh(10 + 24/t + 5as/(ht)); + sequence parallel sbh/t (34 + 5as/h); selective drops the
    5as/h term; full recomputation keeps 2sbh."""
    m = load_model("megatron-175b")
    s, b, h, a, t = 2048, 1, m.hidden, m.heads, 8
    sbh = s * b * h
    assert m.activation_bytes(b, s) == pytest.approx(sbh * (34 + 5 * a * s / h))
    assert m.activation_bytes(b, s, tp=t) == pytest.approx(
        sbh * (10 + 24 / t + 5 * a * s / (h * t))
    )
    assert m.activation_bytes(b, s, tp=t, sp=True) == pytest.approx(sbh / t * (34 + 5 * a * s / h))
    assert m.activation_bytes(b, s, tp=t, sp=True, recompute="selective") == pytest.approx(
        sbh / t * 34
    )
    assert m.activation_bytes(b, s, tp=t, recompute="full") == pytest.approx(2 * sbh)


@pytest.mark.parametrize(
    ("name", "billions"),
    [("gpt3-175b", 175.0), ("llama2-7b", 6.74), ("llama2-70b", 68.98), ("llama3-8b", 8.03),
     ("llama3-70b", 70.55), ("smollm2-135m", 0.1345), ("megatron-1t", 1008.0),
     ("megatron-146b", 145.6), ("megatron-530b", 529.6)],
)  # fmt: skip
def test_parameter_counts_match_published(name: str, billions: float) -> None:
    assert load_model(name).params() / 1e9 == pytest.approx(billions, rel=0.01)


def test_moe_active_parameters() -> None:
    """Mixtral 8x7B: 46.7B parameters, 12.9B active per token (Jiang et al. 2024)."""
    m = load_model("mixtral-8x7b")
    assert m.params() / 1e9 == pytest.approx(46.7, rel=0.01)
    assert m.params(active=True) / 1e9 == pytest.approx(12.9, rel=0.01)


def test_hf_config_dict_and_file(tmp_path: Path) -> None:
    cfg = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
           "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
           "vocab_size": 32000, "max_position_embeddings": 4096, "tie_word_embeddings": False,
           "hidden_act": "silu", "rope_theta": 10000.0}  # fmt: skip
    m = from_hf_config(cfg)
    assert m.params() == model_presets()["llama2-7b"].params()
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert load_model(tmp_path).params() == m.params()
    gpt2 = from_hf_config({"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12,
                           "vocab_size": 50257, "n_positions": 1024})  # fmt: skip
    assert gpt2.params() / 1e6 == pytest.approx(124.4, rel=0.01)  # GPT-2 small
    with pytest.raises(ConfigError, match="attention heads"):
        from_hf_config({"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 10})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a readable JSON"):
        load_model(tmp_path / "bad.json")


def test_pipeline_bubble_is_p_minus_1_over_v_m() -> None:
    m = load_model("llama2-7b")
    for v in (1, 2):
        p = ParallelPlan(pp=4, micro_batch=1, global_batch=16, seq_len=2048, virtual_stages=v,
                         recompute="full")  # fmt: skip
        est = plan_training(m, DGX_H100, 4, p)
        busy = est.step_time_s - est.bubble_s - est.dp_exposed_s - est.optimizer_s
        # the last stage's LM head makes the stages uneven: the bubble is a little larger
        assert est.bubble_s / busy == pytest.approx(3 / (v * 16), rel=0.5)
        assert est.bubble_s / busy >= 3 / (v * 16)


def test_memory_levers_order_and_fit_check() -> None:
    m = load_model("llama2-7b")
    free = Assumptions(check_memory=False)
    est = {z: plan_training(m, DGX_H100, 8, ParallelPlan(zero=z, seq_len=4096), free).memory
           for z in (0, 1, 2, 3)}  # fmt: skip
    mem = {z: e.total for z, e in est.items()}
    assert mem[0] > mem[1] > mem[2] > mem[3]
    states = est[0].weights + est[0].grads + est[0].optimizer  # ZeRO paper: 2 + 2 + 12 B/param
    assert states == pytest.approx(16 * m.params(), rel=1e-6)
    assert est[1].optimizer == pytest.approx(12 * m.params() / 8, rel=1e-6)
    assert est[3].weights == pytest.approx(2 * m.params() / 8, rel=1e-6)
    acts = {r: plan_training(m, DGX_H100, 8, ParallelPlan(zero=3, seq_len=4096, recompute=r,
                                                          flash_attention=False)).memory.activations
            for r in ("none", "selective", "full")}  # fmt: skip
    assert acts["none"] > acts["selective"] > acts["full"]
    with pytest.raises(ConfigError, match=r"needs 1\d\d.\d GiB .* GiB over; try --") as err:
        plan_training(m, DGX_H100, 8, ParallelPlan(seq_len=4096))  # 16 B/param on each GPU
    assert "--zero 3" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="no single change fits"):  # 70B x 16 B > 8 x 80 GB
        plan_training(load_model("llama2-70b"), DGX_H100, 8, ParallelPlan(tp=8, seq_len=4096))


def test_wire_formats_change_bytes() -> None:
    m = load_model("llama3-8b")
    p = ParallelPlan(tp=2, zero=1, global_batch=16, seq_len=4096)
    bf16 = plan_training(m, DGX_H100, 16, p)
    fp8 = plan_training(m, DGX_H100, 16, ParallelPlan(**{**p.__dict__, "grad_bits": 8,
                                                         "act_bits": 8}))  # fmt: skip
    by = {c.name: c.nbytes for c in bf16.comms}
    by8 = {c.name: c.nbytes for c in fp8.comms}
    assert by8["DP grad RS"] == pytest.approx(by["DP grad RS"] / 2)
    assert by8["TP all-reduce"] == pytest.approx(by["TP all-reduce"] / 2)
    assert fp8.step_time_s < bf16.step_time_s


def test_energy_split_adds_up() -> None:
    p = ParallelPlan(tp=2, pp=2, zero=1, global_batch=32, seq_len=4096)
    est = plan_training(load_model("llama3-8b"), DGX_H100, 16, p)
    e = est.energy
    parts = (e.math_j, e.memory_j, e.other_j, e.link_j, e.wait_j)
    assert all(x > 0 for x in parts) and sum(parts) == pytest.approx(e.total_j)
    gpu_j = e.math_j + e.memory_j + e.other_j + e.wait_j
    wait = est.step_time_s - est.compute_s - est.optimizer_s
    want = 16 * (700 * (est.compute_s + est.optimizer_s) + 700 * 0.49 * wait)
    assert gpu_j == pytest.approx(want, rel=1e-6)
    assert est.tokens == 32 * 4096 and 0 < est.mfu <= est.hfu < 1


def test_serving_bits_and_batch() -> None:
    m = load_model("llama3-70b")
    base = ServingPlan(batch=8, prompt=1024, decode=128)
    e16 = plan_serving(m, DGX_H100, 8, base)
    e4 = plan_serving(m, DGX_H100, 8, ServingPlan(**{**base.__dict__, "weight_bits": 4}))
    assert e4.memory.weights < 0.3 * e16.memory.weights
    assert e4.decode_step_s < e16.decode_step_s and e4.j_per_token < e16.j_per_token
    big = plan_serving(m, DGX_H100, 8, ServingPlan(**{**base.__dict__, "batch": 64}))
    assert big.tokens_per_s > 4 * e16.tokens_per_s  # decode is bandwidth-bound: batching pays
    assert e16.comm.calls == 2 * m.layers and e16.decode_comm_s > 0
    two = plan_serving(m, DGX_H100, 8, ServingPlan(**{**base.__dict__, "tp": 4}))
    assert two.replicas == 2
    with pytest.raises(ConfigError, match="KV cache"):
        plan_serving(m, DGX_H100, 8, ServingPlan(batch=512, prompt=8192, decode=8192))


@pytest.mark.parametrize(
    ("model", "gpus", "plan", "match"),
    [
        ("smollm2-135m", 8, ParallelPlan(tp=2), "does not divide the 9 attention heads"),
        ("llama3-8b", 8, ParallelPlan(pp=8, virtual_stages=3), "does not divide the 32 layers"),
        ("llama3-8b", 8, ParallelPlan(pp=3), "do not split"),
        ("llama3-8b", 8, ParallelPlan(tp=16), "needs more than 8 GPUs"),
        ("llama3-8b", 0, ParallelPlan(), "--gpus 0"),
        ("llama3-8b", 12, ParallelPlan(), "not a whole number of 8-GPU"),
        ("llama3-8b", 8, ParallelPlan(zero=4), "ZeRO stage 4"),
        ("llama3-8b", 8, ParallelPlan(ep=2), "MoE"),
        ("llama3-8b", 8, ParallelPlan(sequence_parallel=True), "tp > 1"),
        ("llama3-8b", 8, ParallelPlan(global_batch=12), "not a multiple"),
        ("llama3-8b", 8, ParallelPlan(math_format="e2m1"), "no e2m1 peak"),
    ],
)
def test_bad_plans_are_one_line(model, gpus, plan, match) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        plan_training(load_model(model), DGX_H100, gpus, plan)
    assert "\n" not in str(err.value)


def test_unknown_presets() -> None:
    with pytest.raises(ConfigError, match="did you mean: llama3-8b"):
        load_model("llama3-8")
    with pytest.raises(ConfigError, match="math_efficiency"):
        Assumptions(math_efficiency=1.5)


def test_search_returns_a_true_pareto_front() -> None:
    res = search_plans(load_model("llama2-7b"), DGX_H100, 16, global_batch=32, seq_len=2048)
    assert res.estimates and any(res.front) and res.rejected > 0
    pts = [(e.step_time_s, e.energy.total_j, e.memory.total) for e in res.estimates]
    for i, on in enumerate(res.front):
        dominated = any(all(o <= v for o, v in zip(q, pts[i], strict=True)) and q != pts[i]
                        for q in pts)  # fmt: skip
        assert on != dominated
    assert pareto_front([(1, 2), (2, 1), (2, 2), (1, 2)]) == [True, True, False, True]
    times = [e.step_time_s for e in res.estimates]
    assert times == sorted(times)


# --- command lines -----------------------------------------------------------------------------

runner = CliRunner(env={"COLUMNS": "80"})


def _cli(*args: str) -> str:
    from picojoule.cluster.cli import app

    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_cli_plan_serve_search_and_json(tmp_path: Path) -> None:
    out = _cli("plan", "--model", "llama3-70b", "--gpus", "64", "--tp", "8", "--pp", "2",
               "--zero", "1", "--global-batch", "64", "--seq-len", "4096",
               "--json", str(tmp_path / "p.json"))  # fmt: skip
    assert "MFU" in out and "pipeline bubble" in out and "TP all-reduce" in out
    assert max(len(line) for line in out.splitlines() if not line.startswith("wrote")) <= 80
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["plan"]["dp"] == 4 and 0 < doc["mfu"] < 1 and doc["energy"]["total_j"] > 0
    out = _cli("plan", "--model", "llama3-8b", "--serve", "--batch", "4", "--weight-bits", "4")
    assert "decode J/token" in out and "tokens/s" in out
    out = _cli("plan", "--model", "llama2-7b", "--gpus", "16", "--global-batch", "32",
               "--seq-len", "2048", "--search", "--limit", "5")  # fmt: skip
    assert "Pareto front" in out and "*" in out


def test_cli_tables() -> None:
    assert "nvlink4" in _cli("links") and "primary" in _cli("links")
    assert "dgx-h100" in _cli("nodes") and "nvl72" in _cli("nodes")
    models = _cli("models")
    assert "1.01T" in models and "175B" in models and "46.7B/12.9B" in models
    out = _cli("collective", "--node", "dgx-h100", "--min-bytes", "1M", "--max-bytes", "1G")
    assert "nvls/Simple" in out and "busbw" in out


def test_cli_errors_are_config_errors(tmp_path: Path) -> None:
    from picojoule.cluster.cli import app

    for args in (["plan", "--model", "nope"], ["plan", "--recompute", "some"],
                 ["plan", "--search", "--serve"], ["collective", "--op", "all_reduse"],
                 ["collective", "--max-bytes", "lots"],
                 ["plan", "--json", str(tmp_path / "missing" / "x.json")]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code != 0 and result.exception is not None, args
        assert "PicojouleError" in type(result.exception).__mro__[1].__name__ or isinstance(
            result.exception, Exception
        )
        from picojoule.errors import PicojouleError

        assert isinstance(result.exception, PicojouleError), (args, result.exception)


def test_explain_interconnect() -> None:
    from picojoule.energy.cli import app

    result = CliRunner(env={"COLUMNS": "80"}).invoke(app, ["interconnect"])
    assert result.exit_code == 0, result.output
    out = result.output
    for gpu in ("p100", "v100", "a100", "h100", "b200"):
        assert gpu in out
    assert "11.2x" in out and "106x" in out  # NVLink 80 -> 900 GB/s, 16-bit peak 21.2 -> 2250


_PROBE = """
import sys
sys.argv = ["picojoule", "cluster", "plan", "--model", "smollm2-135m"]
from picojoule import cli
try:
    cli.main()
except SystemExit:
    pass
from typer.testing import CliRunner
from picojoule.energy.cli import app
assert CliRunner().invoke(app, ["interconnect"]).exit_code == 0
print("HEAVY", sorted({m.split(".")[0] for m in sys.modules} & {"torch", "matplotlib", "ray"}))
"""


def test_cluster_commands_do_not_import_torch() -> None:
    """`picojoule cluster plan` and `picojoule explain interconnect` start without torch."""
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    line = [x for x in done.stdout.splitlines() if x.startswith("HEAVY")]
    assert line == ["HEAVY []"], done.stdout[-1500:] + done.stderr[-1500:]
