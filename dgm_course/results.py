"""Headline numbers: `record(...)` from the solution notebooks, and the results table of the README.

`python -m dgm_course.results` rewrites the table between the README's `<!-- results:start -->` and
`<!-- results:end -->` markers from `results/*.json`, beside the targets of COURSE.md (kept in `TARGETS`).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import re
import tempfile
from pathlib import Path

from .runtime import mode

# (lecture, name) -> (standard target, full target, published figure with its source). A target reads
# "<= 93" or ">= 24" when it is a bound the table can test; anything else is shown as written.
FID = "course-classifier FID, not comparable with Inception FID"
FLOOR = "FID of held-out real training digits against the same reference, same n"
CONFIDENT = "fraction classified with probability >= 0.9; real test digits about 0.98"
TARGETS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("01_background", "histogram_test_nll"): ("", "", "baseline for the mixture"),
    ("01_background", "mixture_test_nll"): ("< histogram_test_nll", "< histogram_test_nll", "no published figure: course data"),
    ("02_autoregressive_models", "fvsbn_test_nll"): ("<= 100", "<= 97", "97.45 (Larochelle & Murray 2011; static binarization, 10,000 test images; ours: dynamic)"),
    ("02_autoregressive_models", "nade_test_nll"): ("<= 95", "<= 89", "88.33 (Larochelle & Murray 2011; static binarization, 10,000 test images; ours: dynamic)"),
    ("02_autoregressive_models", "made_test_nll"): ("<= 93", "<= 87", "88.40, 1 hidden layer, 1 mask (Germain et al. 2015; static, 10,000 test images; ours: dynamic)"),
    ("02_autoregressive_models", "made_ensemble_test_nll"): ("", "<= 87", "86.64, 1 hidden layer, 32 masks (Germain et al. 2015; static, 10,000 test images; ours: dynamic)"),
    ("03_maximum_likelihood", "pixelcnn_test_nll"): ("<= 92", "<= 82", "81.30 (van den Oord et al. 2016, Table 4; static binarization, 10,000 test images; ours: dynamic)"),
    ("03_maximum_likelihood", "arithmetic_coding_gap_pct"): ("<= 1", "<= 1", "coding overhead vs model NLL"),
    ("03_maximum_likelihood", "coded_bits_per_digit"): ("< gzip_bits_per_digit", "< gzip_bits_per_digit", "also below png_bits_per_digit"),
    ("04_latent_variable_models", "em_vs_sklearn_loglik_diff"): ("<= 0.001", "<= 0.001", "scikit-learn GaussianMixture"),
    ("05_variational_autoencoders", "vae_test_nll"): ("<= 95", "<= 87", "86.76 (Burda et al. 2016, Table 1: VAE, one "
                                                      "stochastic layer, dynamic binarization, 10,000 test images, "
                                                      "k=5000; ours: the course test set, k=1000)"),
    ("05_variational_autoencoders", "iwae50_test_nll"): ("<= 93", "<= 85", "84.78 (Burda et al. 2016, Table 1: IWAE "
                                                         "k=50, one stochastic layer, same protocol)"),
    ("05_variational_autoencoders", "gaussian_vae_bits_per_dim"): (
        "", "", "upper bound from the ELBO; 8 = uniform over 256 grey levels"),
    ("06_normalizing_flows", "cdf_flow_nll_gap"): ("<= 0.02", "<= 0.02", "nats above the true density's NLL"),
    ("07_flow_architectures", "realnvp_mnist_bpd"): ("<= 1.6", "<= 1.1", "1.06 multiscale RealNVP, 1.05 Glow, 1.89 MAF (FFJORD, Grathwohl et al. 2019, Table 2; official test set); ours: the course test set, a small model"),
    ("07_flow_architectures", "realnvp_checkerboard_test_nll"): ("", "", "log 8 = 2.079 (the true density)"),
    ("07_flow_architectures", "maf_iaf_density_time_ratio"): ("< 1", "< 1", "MAF evaluates densities in one pass"),
    ("07_flow_architectures", "maf_iaf_sampling_time_ratio"): ("> 1", "> 1", "IAF samples in one pass"),
    ("08_gans", "ring_modes"): (">= 8", ">= 8", "of 8 modes; ring radius/σ = 14 here vs 100 in Metz et al. 2017 and the "
                                "WGAN-GP toy script: not comparable"),
    ("08_gans", "ring_high_quality"): (">= 0.9", ">= 0.9", "fraction within 3 sigma of a mode"),
    ("08_gans", "grid_modes"): (">= 24", ">= 24", "of 25 modes; grid spacing/σ = 20 here vs 40 in the WGAN-GP toy "
                                "script: not comparable"),
    ("08_gans", "grid_high_quality"): (">= 0.9", ">= 0.9", "fraction within 3 sigma of a mode"),
    ("08_gans", "dcgan_fid"): ("<= 4 * fid_floor", "<= 1.3 * fid_floor", FID + "; the weight-averaged generator"),
    ("08_gans", "dcgan_last_fid"): ("", "", FID + "; the generator of the last step, for comparison"),
    ("08_gans", "fid_floor"): ("", "", FLOOR),
    ("08_gans", "dcgan_confident_fraction"): ("", "", CONFIDENT),
    ("08_gans", "dcgan_last_confident_fraction"): ("", "", CONFIDENT),
    ("09_gan_divergences", "fgan_kl_ring_modes"): (">= 8", ">= 8", "KL covers the modes"),
    ("09_gan_divergences", "fgan_reverse_kl_ring_modes"): ("< fgan_kl_ring_modes", "< fgan_kl_ring_modes", "reverse KL seeks modes"),
    ("09_gan_divergences", "wgan_gp_grid_modes"): (">= 20", ">= 20", "of 25 modes; the WGAN-GP toy script "
                                                   "(gan_toy.py) trains 100000 steps of a 3 x 512 network"),
    ("09_gan_divergences", "wgan_gp_grid_high_quality"): (">= 0.7", ">= 0.7", "fraction within 3 sigma of a mode"),
    ("09_gan_divergences", "wgan_gp_fid"): ("", "", FID),
    ("09_gan_divergences", "fid_floor"): ("", "", FLOOR),
    ("09_gan_divergences", "wgan_gp_confident_fraction"): ("", "", CONFIDENT),
    ("09_gan_divergences", "bigan_probe_accuracy"): ("> random_encoder_probe_accuracy", "> random_encoder_probe_accuracy",
                                                     "linear probe on E(x) (Donahue et al. 2017)"),
    ("10_energy_based_models", "ml_ebm_kl"): ("<= 0.02", "<= 0.01", "nats; exact ML on the grid, course data"),
    ("10_energy_based_models", "cd_ebm_kl"): ("<= 0.02", "<= 0.01", "nats; contrastive divergence, course data"),
    ("10_energy_based_models", "cd_planted_mode_mass"): ("> ml_planted_mode_mass", "> ml_planted_mode_mass",
                                                         "CD leaves a spurious mode that ML removes"),
    ("10_energy_based_models", "pcd_planted_mode_mass"): ("< cd_planted_mode_mass", "< cd_planted_mode_mass",
                                                          "persistent chains reach the planted mode (Tieleman 2008)"),
    ("11_training_energy_based_models", "nce_logz_error"): ("<= 0.05", "<= 0.05", "nats, against the exact log Z"),
    ("11_training_energy_based_models", "mnist_ebm_energy_gap"): ("> 0", "> 0", "noise energy above digits' energy"),
    ("12_score_based_models", "dsm_score_error"): ("", "", "against the analytic score of the mixture"),
    ("12_score_based_models", "langevin_mode_weight_error"): ("", "", "plain Langevin; lecture 13 anneals it away"),
    ("13_noise_conditional_score_networks", "annealed_langevin_mode_weight_error"): (
        "< plain_langevin_mode_weight_error", "< plain_langevin_mode_weight_error", "Song and Ermon (2019), Fig. 3"),
    ("13_noise_conditional_score_networks", "pf_ode_mode_weight_error"): ("<= 0.03", "<= 0.02",
                                                                          "same marginals as the SDE"),
    ("13_noise_conditional_score_networks", "ncsn_mnist_fid"): ("<= 3 * fid_floor", "<= 1.3 * fid_floor",
                                                                FID + "; annealed Langevin"),
    ("13_noise_conditional_score_networks", "reverse_sde_mnist_fid"): ("", "", FID + "; reverse VE SDE"),
    ("13_noise_conditional_score_networks", "pc_mnist_fid"): ("", "", FID + "; predictor-corrector"),
    ("13_noise_conditional_score_networks", "pf_ode_mnist_fid"): ("", "", FID + "; probability-flow ODE"),
    ("13_noise_conditional_score_networks", "fid_floor"): ("", "", FLOOR),
    ("13_noise_conditional_score_networks", "ncsn_mnist_confident_fraction"): ("", "", CONFIDENT),
    ("13_noise_conditional_score_networks", "vp_reverse_sde_mode_weight_error"): (
        "", "", "reverse VP SDE from N(0, I); same marginals as the VE SDE (Song et al. 2021)"),
    ("13_noise_conditional_score_networks", "pf_ode_test_nll"): (
        "", "", "exact -log p_sigma_L is true_test_nll; the gap estimates KL(p_data || p_theta)"),
    ("13_noise_conditional_score_networks", "pf_ode_exact_score_max_error"): (
        "<= 0.1", "<= 0.1", "instantaneous change of variables (Chen et al. 2018), exact divergence"),
    ("14_evaluation", "classifier_test_accuracy"): (">= 0.99", ">= 0.99", "the course classifier, on the mode's test set"),
    ("14_evaluation", "fid_test_train"): ("< fid_noise_0_1", "< fid_noise_0_1",
                                          FID + "; held-out training digits vs the test set (= fid_floor)"),
    ("14_evaluation", "fid_floor"): ("< made_fid", "< made_fid", FLOOR),
    ("14_evaluation", "hype_inf_simulated_observer"): ("", "", "HYPE_inf (Zhou et al. 2019) of a fixed rule, not a person"),
    ("14_evaluation", "parzen_memorizer_loglik"): ("", "", "225 ± 2 nats for GAN samples (Goodfellow et al. 2014, Table 1: "
                                                   "Gaussian Parzen window, MNIST test set, real-valued pixels); ours is "
                                                   "a KDE of training images"),
    ("15_diffusion_models", "ddpm_fid"): ("<= 2 * fid_floor", "<= 1.3 * fid_floor",
                                          FID + "; unguided: y ~ p(y), conditional model, w = 1; ancestral"),
    ("15_diffusion_models", "ddpm_confident_fraction"): (">= 0.7", ">= 0.7", CONFIDENT),
    ("15_diffusion_models", "ddim50_fid"): ("<= 2 * fid_floor", "<= 1.3 * fid_floor",
                                            FID + "; unguided (y ~ p(y), w = 1), DDIM 50 steps, eta = 0"),
    ("15_diffusion_models", "ddim50_confident_fraction"): (">= 0.7", ">= 0.7", CONFIDENT),
    ("15_diffusion_models", "ddim50_eta1_fid"): ("<= 2 * fid_floor", "<= 1.3 * fid_floor",
                                                 FID + "; unguided (y ~ p(y), w = 1), DDIM 50 steps, eta = 1"),
    ("15_diffusion_models", "ddim50_eta1_confident_fraction"): (">= 0.7", ">= 0.7", CONFIDENT),
    ("15_diffusion_models", "null_ddim50_fid"): ("<= 2 * fid_floor", "<= 1.3 * fid_floor",
                                                 FID + "; unconditional model (null label), DDIM 50 steps, eta = 0"),
    ("15_diffusion_models", "null_ddim50_confident_fraction"): (">= 0.7", ">= 0.7", CONFIDENT),
    ("15_diffusion_models", "null_ddim50_eta1_fid"): ("<= 2 * fid_floor", "<= 1.3 * fid_floor",
                                                      FID + "; unconditional model (null label), DDIM 50 steps, "
                                                      "eta = 1"),
    ("15_diffusion_models", "null_ddim50_eta1_confident_fraction"): (">= 0.7", ">= 0.7", CONFIDENT),
    ("15_diffusion_models", "cfg_accuracy_w2"): (">= 0.95", ">= 0.95", "guided samples (w = 2), DDIM"),
    ("15_diffusion_models", "fid_floor"): ("", "", FLOOR),
    ("15_diffusion_models", "cfg_accuracy_w1"): ("> cfg_accuracy_w0", "> cfg_accuracy_w0", "guidance sharpens classes"),
    ("15_diffusion_models", "cfg_accuracy_w3"): ("> cfg_accuracy_w1", "> cfg_accuracy_w1",
                                                 "Ho and Salimans (NeurIPS 2021 workshop; arXiv:2207.12598)"),
}

START, END = "<!-- results:start -->", "<!-- results:end -->"


def results_dir() -> Path:
    """`DGM_RESULTS_DIR`, else `results/` at the root of the course checkout holding the working directory."""
    if os.environ.get("DGM_RESULTS_DIR"):
        return Path(os.environ["DGM_RESULTS_DIR"])
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "solutions").is_dir() and (folder / "dgm_course").is_dir():
            return folder / "results"
    return here / "results"


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename: a reader sees the old
    file or the new one, never half of one, whatever happens while writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def record(lecture: str, name: str, value: float, unit: str, n_data: int | None = None,
           wall_time_s: float | None = None, note: str = "") -> dict:
    """Record one headline number of a lecture for the current mode (replacing an earlier value of the same name)."""
    if not re.fullmatch(r"\d\d_[a-z0-9_]+", lecture or ""):
        raise ValueError(f"lecture must look like '01_background'; got {lecture!r}")
    if not re.fullmatch(r"[a-z0-9_]+", name or ""):
        raise ValueError(f"name must be lower_snake_case; got {name!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name}: value must be a finite number; got {value}")
    path = results_dir() / f"{lecture}.{mode()}.json"
    numbers = json.loads(path.read_text())["numbers"] if path.exists() else []
    entry = {"name": name, "value": value, "unit": unit, "n_data": n_data,
             "wall_time_s": None if wall_time_s is None else round(float(wall_time_s), 1), "note": note,
             "date": _dt.date.today().isoformat()}
    numbers = [e for e in numbers if e["name"] != name] + [entry]
    write_atomic(path, json.dumps({"lecture": lecture, "mode": mode(), "numbers": numbers}, indent=1))
    print(f"recorded {lecture}/{name} = {value:.6g} {unit} ({mode()} mode)")
    return entry


def _met(target: str, value: float, others: dict[str, float]) -> str:
    """'yes' / '**no**' for a target "<op> number", "<op> other_name" or "<op> factor * other_name" (another number of
    the same lecture and mode, e.g. "<= 2 * fid_floor"); "" when the target is not of that form or names no number."""
    m = re.fullmatch(r"\s*(<=|>=|<|>)\s*(?:([-+0-9.eE]+)\s*\*\s*)?([-+0-9.eE]+|[a-z0-9_]+)\s*", target)
    if not m:
        return ""
    op, factor, ref = m.groups()
    if ref in others:
        bound = others[ref]
    elif re.fullmatch(r"[-+0-9.eE]+", ref) and factor is None:
        bound = float(ref)
    else:
        return ""
    bound *= float(factor) if factor is not None else 1.0
    ok = {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound}[op]
    return "yes" if ok else "**no**"


def table(folder: Path | None = None) -> str:
    """The Markdown results table from every `results/*.json`, one row per recorded number and mode."""
    folder = folder or results_dir()
    rows = ["| lecture | number | value | unit | mode | data | wall time | standard target | full target | met | published / reference |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    order = {"full": 0, "standard": 1, "smoke": 2}
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    entries = []
    for path in files:
        data = json.loads(path.read_text())
        entries += [(data["lecture"], order.get(data["mode"], 3), data["mode"], e) for e in data["numbers"]]
    values = {(lecture, run_mode, e["name"]): e["value"] for lecture, _, run_mode, e in entries}
    for lecture, _, run_mode, e in sorted(entries, key=lambda t: (t[0], t[1])):
        standard, full, published = TARGETS.get((lecture, e["name"]), ("", "", ""))
        target = {"standard": standard, "full": full}.get(run_mode, "")
        others = {name: v for (lec, mode_, name), v in values.items() if lec == lecture and mode_ == run_mode}
        wall = "" if e["wall_time_s"] is None else f"{e['wall_time_s']:.0f} s"
        rows.append(f"| {lecture} | {e['name']} | {e['value']:.4g} | {e['unit']} | {run_mode} | {e['n_data'] or ''} | "
                    f"{wall} | {standard} | {full} | {_met(target, e['value'], others)} | {published} |")
    if len(rows) == 2:
        rows.append("| (nothing recorded yet) | | | | | | | | | | |")
    return "\n".join(rows)


def update_readme(readme: Path, folder: Path | None = None) -> bool:
    """Rewrite the table between the markers of `readme`; returns whether the file changed."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} needs the markers {START} and {END} around the results table")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table(folder)}\n{END}{tail}"
    if new != text:
        readme.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    """Command line: regenerate the README's results table (`--check` only reports whether it is stale)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--results", type=Path, default=None, help="folder of recorded numbers (default: results/)")
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is stale, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        text = args.readme.read_text()
        fresh = f"{START}\n{table(args.results)}\n{END}" in text
        print("results table is up to date" if fresh else "results table is stale: run python -m dgm_course.results")
        return 0 if fresh else 1
    changed = update_readme(args.readme, args.results)
    print(f"{args.readme}: results table {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
