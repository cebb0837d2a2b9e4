"""The GPU check's Python part: what the project does on a CUDA device, written as findings.

    PYTHONPATH=src python bench/gpu_check.py --out OUTDIR                 # on the GPU (bench/gpu_check.sh)
    PYTHONPATH=src python bench/gpu_check.py --out OUTDIR --device cpu --tiny   # the same parts, tiny, on CPU

Four parts, each written into OUTDIR/findings.json (and findings.md) as soon as it ends, so a
run cut short by its time limit still leaves what it measured:

1. environment: torch, CUDA, the card, its memory, bf16 support;
2. tests: `pytest -m cuda tests/test_cuda.py` (placement, bf16 autocast, checkpoints across
   devices, exact resume on the GPU), counts and the names of failures;
3. cyclegan: step time and peak memory of the real training loop (bench/cyclegan_bench.py's
   one_case) at 64 and 128 px, fp32 and bf16, and the bf16/fp32 ratios;
4. classify: the CNN's training images/s in fp32 and bf16 (bench/classify_bench.py's bench);
5. demo: `pipeline run all` of the built-in demo with `device` set, its stage timings.

--tiny shrinks every size (32/48 px, width 4, a few steps, the demo cut to a few steps and one
training set) so the test suite can run the parts on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


def environment(device: str) -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "device": device,
            "cuda_available": torch.cuda.is_available()}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(card=props.name, memory_gib=round(props.total_memory / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported(),
                    cudnn=torch.backends.cudnn.version())
    info["cpu_threads"] = torch.get_num_threads()
    return info


def cuda_tests(out: Path, timeout: float) -> dict:
    """The tests marked cuda, through pytest; counts from its JUnit XML."""
    report = out / "cuda_tests.xml"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda",
               str(ROOT / "tests" / "test_cuda.py"), f"--junitxml={report}"]
    t0 = time.monotonic()
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    (out / "cuda_tests.log").write_text(done.stdout + done.stderr)
    result = {"exit_code": done.returncode, "seconds": round(time.monotonic() - t0, 1)}
    if report.is_file():
        cases = ET.parse(report).getroot().iter("testcase")
        outcome = {}
        for case in cases:
            kind = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
            outcome[case.get("name")] = kind
        result["tests"] = outcome
        for kind, count in (("passed", "passed"), ("failure", "failed"), ("error", "errors"), ("skipped", "skipped")):
            result[count] = sum(v == kind for v in outcome.values())
    return result


def cyclegan(device: str, tiny: bool) -> dict:
    """Step time and peak memory per (size, precision); each case in a fresh process on the GPU
    (its own peak memory), in this one with --tiny."""
    from cyclegan_bench import one_case, run_in_subprocess

    sizes, batch, ngf, warmup, steps = ((32, 48), 1, 4, 0, 1) if tiny else ((64, 128), 4, 64, 3, 12)
    cases = {}
    for size in sizes:
        for precision in ("fp32", "bf16"):
            case = dict(size=size, batch=batch, ngf=ngf, warmup=warmup, steps=steps, device=device,
                        precision=precision, compiled=False, threads=1 if tiny else 0)
            try:
                cases[f"{size}px {precision}"] = one_case(**case) if tiny else run_in_subprocess(**case)
            except Exception as error:  # a failed case is a finding, not the end of the check
                cases[f"{size}px {precision}"] = {"error": str(error)[-500:]}
    ratios = {}
    for size in sizes:
        fp32, bf16 = cases.get(f"{size}px fp32", {}), cases.get(f"{size}px bf16", {})
        if "seconds_per_step" in fp32 and "seconds_per_step" in bf16:
            ratios[f"{size}px"] = {"bf16_speedup": round(fp32["seconds_per_step"] / bf16["seconds_per_step"], 2),
                                   "bf16_memory_ratio": round(bf16["peak_mb"] / max(1, fp32["peak_mb"]), 2)}
    return {"cases": cases, "bf16_vs_fp32": ratios}


def classify(device: str, tiny: bool) -> dict:
    from classify_bench import FER_TRAIN, bench

    width, images, batches = (4, 128, (32,)) if tiny else (32, 8192, (64, 256))
    rows = {}
    for batch in batches:
        for bf16 in (False, True):
            rate, _ = bench(width, bf16, images, batch, device=device)
            rows[f"batch {batch} {'bf16' if bf16 else 'fp32'}"] = {
                "width": width, "images_per_s": round(rate), "fer2013_epoch_s": round(FER_TRAIN / rate, 1)}
    return rows


def demo(out: Path, device: str, tiny: bool, timeout: float) -> dict:
    """`pipeline run all` on the built-in demo, in a subprocess; its stage timings."""
    from fertransfer.demo import write_demo_data
    from fertransfer.pipelines.config import default_config_text
    from fertransfer.pipelines.demo import demo_overrides

    folder = out / "demo"
    write_demo_data(folder)
    overrides = demo_overrides()
    overrides["run"] = {"dir": "run", "device": device}
    if tiny:
        overrides["cyclegan"].update(steps=8, checkpoint_every=4, sample_every=4, swd_images=8)
        overrides["classify"].update(epochs=1, train_sets=["real", "synthetic"])
    config = folder / "pipeline.toml"
    config.write_text(default_config_text(overrides))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t0 = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "fertransfer.pipelines.cli", "run", "all", "--config",
                               str(config)], cwd=folder, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "seconds": round(time.monotonic() - t0, 1)}
    (out / "demo.log").write_text(done.stdout + done.stderr)
    result = {"exit_code": done.returncode, "seconds": round(time.monotonic() - t0, 1), "stages": {}}
    for manifest in sorted((folder / "run").glob("*/manifest.json")):
        timings = json.loads(manifest.read_text()).get("timings", {})
        result["stages"][manifest.parent.name] = {"seconds": timings.get("seconds")}
    if done.returncode:
        result["error"] = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"]
    return result


def markdown(findings: dict) -> str:
    env = findings.get("environment", {})
    lines = [f"# GPU check: {env.get('card', env.get('device'))}", "",
             f"torch {env.get('torch')}, CUDA {env.get('cuda_build')}, {env.get('memory_gib', '?')} GiB, "
             f"bf16 {env.get('bf16', '-')}; {'tiny sizes' if findings.get('tiny') else 'full sizes'}; "
             f"{findings.get('seconds', 0):.0f} s in all", ""]
    for part in ("tests", "cyclegan", "classify", "demo"):
        if "error" in findings.get(part, {}) and part != "demo":
            lines += [f"## {part}: failed", "", f"    {findings.pop(part)['error']}", ""]
    tests = findings.get("tests")
    if tests:
        lines += ["## Tests marked cuda", "", f"passed {tests.get('passed', 0)}, failed {tests.get('failed', 0)}, "
                  f"errors {tests.get('errors', 0)}, skipped {tests.get('skipped', 0)} (pytest exit code "
                  f"{tests.get('exit_code')}; log: cuda_tests.log)", ""]
        lines += [f"- {name}: {kind}" for name, kind in tests.get("tests", {}).items()] + [""]
    gan = findings.get("cyclegan")
    if gan:
        lines += ["## CycleGAN training step", "", "| case | s/step | images/s | peak MB |", "|---|---:|---:|---:|"]
        for name, case in gan["cases"].items():
            lines.append(f"| {name} | {case.get('seconds_per_step', case.get('error', ''))} | "
                         f"{case.get('images_per_s', '')} | {case.get('peak_mb', '')} |")
        for size, ratio in gan["bf16_vs_fp32"].items():
            lines.append(f"\n{size}: bf16 {ratio['bf16_speedup']}x the speed of fp32, "
                         f"{ratio['bf16_memory_ratio']}x its peak memory")
        lines.append("")
    cnn = findings.get("classify")
    if cnn:
        lines += ["## Classify CNN training", "", "| case | images/s | s per FER2013 epoch |", "|---|---:|---:|"]
        lines += [f"| {name} (width {row['width']}) | {row['images_per_s']} | {row['fer2013_epoch_s']} |"
                  for name, row in cnn.items()] + [""]
    run = findings.get("demo")
    if run:
        lines += ["## Demo, pipeline run all", "", f"exit code {run.get('exit_code')}, {run.get('seconds')} s"
                  + (f"; error: {run['error']}" if run.get("error") else ""), ""]
        lines += [f"- {stage}: {t['seconds']} s" for stage, t in run.get("stages", {}).items()] + [""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for findings.json, findings.md and logs")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (the test suite's CPU run)")
    parser.add_argument("--budget-s", type=float, default=450, help="the whole check's seconds; parts get shares")
    parser.add_argument("--parts", nargs="+", default=["tests", "cyclegan", "classify", "demo"],
                        choices=("tests", "cyclegan", "classify", "demo"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (torch.cuda.is_available() is False); nothing measured")
        return 0
    t0 = time.monotonic()
    findings: dict = {"tiny": args.tiny, "environment": environment(args.device)}

    def save() -> None:
        findings["seconds"] = round(time.monotonic() - t0, 1)
        (out / "findings.json").write_text(json.dumps(findings, indent=2))
        (out / "findings.md").write_text(markdown(dict(findings)))

    save()
    left = lambda: args.budget_s - (time.monotonic() - t0)  # noqa: E731
    steps = [("tests", lambda: cuda_tests(out, max(30.0, 0.3 * left()))),
             ("cyclegan", lambda: cyclegan(args.device, args.tiny)),
             ("classify", lambda: classify(args.device, args.tiny)),
             ("demo", lambda: demo(out, args.device, args.tiny, max(30.0, left() - 10)))]
    for name, part in steps:
        if name not in args.parts:
            continue
        print(f"gpu_check: {name} ({left():.0f} s left)", flush=True)
        try:
            findings[name] = part()
        except Exception as error:  # one part failing leaves the others' findings
            findings[name] = {"error": f"{type(error).__name__}: {error}"[-1000:]}
        save()
    print(f"gpu_check: findings in {out / 'findings.json'} and {out / 'findings.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
