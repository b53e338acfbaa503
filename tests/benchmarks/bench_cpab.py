"""Benchmark of methods.motion.cpab against libcpab 0.1.3 (the CPAB release's library).

Run: ``python tests/benchmarks/bench_cpab.py [--quick] [--reps N]``. Every ratio is
measured in this process against the baseline with interleaved repetitions (baseline,
candidate, candidate, baseline, ...): each repetition gives one ratio, and the script prints
their median and min-max, never a best-of-N of one side. The baseline is libcpab's
pure-PyTorch path when ``libcpab`` is importable; otherwise our own ``numeric`` integrator +
Adam stands in and the output says so. The fits are scored on keypoints moved by smooth
random fields (``methods.motion.cpab.synthetic``) at RMS amplitudes 0.2, 0.4 and 0.6, not
on motions drawn from the CPAB prior (which suit the fast fit). ``--quick`` shrinks every
size so the script runs in seconds (smoke test only; its ratios mean nothing).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from methods.motion.cpab import CPAB, Tessellation  # noqa: E402
from methods.motion.cpab.synthetic import smooth_displacement  # noqa: E402

AMPLITUDES = (0.2, 0.4, 0.6)


def _interleaved(baseline, candidate, reps: int):
    """Wall times of ``reps`` interleaved repetitions (ABBA order, so slow drifts of a shared
    machine's load hit both sides alike); returns (times_a, times_b, out_a, out_b)."""
    ta, tb, out_a, out_b = [], [], None, None
    for r in range(reps):
        order = ((0, baseline), (1, candidate)) if r % 2 == 0 else ((1, candidate), (0, baseline))
        for side, fn in order:
            t0 = time.perf_counter()
            out = fn()
            (ta if side == 0 else tb).append(time.perf_counter() - t0)
            if side == 0:
                out_a = out
            else:
                out_b = out
    return ta, tb, out_a, out_b


def _ratio(ta: list[float], tb: list[float]) -> tuple[float, float, float]:
    """Per-repetition ratios a/b: (median, min, max)."""
    r = torch.tensor([a / b for a, b in zip(ta, tb, strict=True)], dtype=torch.float64)
    return float(r.median()), float(r.min()), float(r.max())


def _fmt_ratio(ta, tb) -> str:
    med, lo, hi = _ratio(ta, tb)
    return f"{med:.1f}x (min-max {lo:.1f}-{hi:.1f} over {len(ta)} interleaved reps)"


class Baseline:
    """The release's procedure: libcpab on [0, 1]^2, or our numeric scheme if absent."""

    def __init__(self, ours: CPAB, use_lib: bool = True) -> None:
        self.ours = ours
        self.lib = None
        try:
            if not use_lib:  # e.g. square cells, which libcpab does not offer
                raise ImportError
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                from libcpab import Cpab

            n = ours.tess.nx
            self.lib = Cpab([n, n], device="cpu", zero_boundary=False)
            self.lib_basis = torch.as_tensor(self.lib.params.basis, dtype=torch.float64)
        except ImportError:
            pass
        self.name = "libcpab 0.1.3 (pytorch path)" if self.lib else "OUR numeric+Adam (NO libcpab)"

    def theta_from_ours(self, theta: torch.Tensor) -> torch.Tensor:
        """Same velocity field in libcpab's parameters: u = (x + 1) / 2 gives
        du/dt = M u + (b - M 1) / 2."""
        a = self.ours.cell_matrices(theta)
        m, b = a[..., :2], a[..., 2]
        b_lib = 0.5 * (b - m.sum(-1))
        flat = torch.cat([m, b_lib[..., None]], -1).reshape(theta.shape[0], -1)
        return (flat @ self.lib_basis).float()

    def transform(self, points: torch.Tensor, theta_lib: torch.Tensor) -> torch.Tensor:
        """points (B, N, 2) in [-1, 1] -> (B, N, 2) in [-1, 1], through libcpab."""
        if self.lib is None:
            return self.ours.transform(points, theta_lib, method="numeric")
        u = ((points + 1) / 2).permute(0, 2, 1).contiguous()
        return self.lib.transform_grid(u, theta_lib).permute(0, 2, 1) * 2 - 1

    def flow(self, theta_lib: torch.Tensor, h: int, w: int) -> torch.Tensor:
        ys, xs = torch.linspace(-1, 1, h), torch.linspace(-1, 1, w)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([gx, gy], -1).reshape(1, -1, 2).expand(theta_lib.shape[0], -1, -1)
        return self.transform(grid.contiguous(), theta_lib).reshape(-1, h, w, 2)

    def fit(self, kd: torch.Tensor, ks: torch.Tensor, iterations: int) -> torch.Tensor:
        """The release's loop: zero (libcpab: 1e-6) start, Adam lr 1e-2, Frobenius loss."""
        if self.lib is None:
            return self.ours.fit(kd, ks, method="adam", iterations=iterations)
        theta = self.lib.identity(kd.shape[0], epsilon=1e-6).requires_grad_(True)
        opt = torch.optim.Adam([theta], lr=1e-2)
        kd, ks = kd.detach(), ks.detach()
        for _ in range(iterations):
            opt.zero_grad()
            torch.linalg.norm(self.transform(kd, theta) - ks).backward()
            opt.step()
        return theta.detach()

    def residual(self, kd, ks, theta_lib) -> torch.Tensor:
        with torch.no_grad():
            return (self.transform(kd, theta_lib) - ks).norm(dim=-1).mean(-1)


def _grid(n: int, b: int) -> torch.Tensor:
    lin = torch.linspace(-1, 1, n)
    gy, gx = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([gx, gy], -1).reshape(1, -1, 2).expand(b, -1, -1).contiguous()


def _quantiles(r: torch.Tensor) -> str:
    q = torch.quantile(r.double(), torch.tensor([0.0, 0.5, 0.9, 1.0], dtype=torch.float64))
    return "min {:.2e}  median {:.2e}  p90 {:.2e}  max {:.2e}".format(*q.tolist())


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _noise(r_adam: torch.Tensor) -> torch.Tensor:
    """What "not worse than Adam" allows per set: max(1e-3, 5% of Adam's residual) (the
    size of Adam's own integrator error and late-iteration drift; see docs/cpab.md)."""
    return torch.clamp(0.05 * r_adam, min=1e-3)


def bench_warp(quick: bool, gen: torch.Generator, reps: int) -> None:
    cpab = CPAB(Tessellation(4, 4))
    base = Baseline(cpab)
    side, nth = (12, 2) if quick else (256, 8)
    theta = 0.3 * cpab.sample(nth, generator=gen)
    grid = _grid(side, nth)
    print(f"\n== Warp alone: {side}x{side} grid, 4x4 triangles, {nth} theta, forward + backward")
    print(f"   baseline: {base.name}")

    def run(fn, th):
        th = th.clone().requires_grad_(True)
        out = fn(th)
        out.sum().backward()
        return out.detach()

    th_lib = base.theta_from_ours(theta) if base.lib else theta.float()
    lib = lambda: run(lambda t: base.transform(grid, t), th_lib)  # noqa: E731
    t_lib, t_cf, y_lib, y_cf = _interleaved(
        lib, lambda: run(lambda t: cpab.transform(grid, t), theta.float()), reps
    )
    t_lib2, t_nm, _, y_nm = _interleaved(
        lib, lambda: run(lambda t: cpab.transform(grid, t, method="numeric"), theta.float()), reps
    )
    t_nm2, t_cf2, _, _ = _interleaved(
        lambda: run(lambda t: cpab.transform(grid, t, method="numeric"), theta.float()),
        lambda: run(lambda t: cpab.transform(grid, t), theta.float()),
        reps,
    )
    # High-precision reference on a random subset: float64 fixed steps, two step counts.
    sub = torch.randperm(grid.shape[1], generator=gen)[: (16 if quick else 1024)]
    pts = grid[:, sub].double()
    a = cpab.cell_matrices(theta)
    from methods.motion.cpab import integrate_numeric

    steps = 64 if quick else 4000
    ref = integrate_numeric(pts, a, cpab.tess, steps)
    ref2 = integrate_numeric(pts, a, cpab.tess, steps // 2)
    ref_err = (ref - ref2).norm(dim=-1).max().item() / 2

    def err(y):  # max error in units of the domain size (the domain is 2 wide)
        return (y[:, sub].double() - ref).norm(dim=-1).max().item() / 2

    e_lib, e_cf, e_nm = err(y_lib), err(y_cf), err(y_nm)
    disp = (y_cf - grid).norm(dim=-1).mean().item() / 2
    med = lambda t: float(torch.tensor(t).median())  # noqa: E731
    print(f"   mean displacement {disp:.3f} domain; reference self-error {ref_err:.1e}")
    print(
        f"   median time  baseline {med(t_lib + t_lib2):.3f}s  closed_form {med(t_cf):.3f}s  numeric(50) {med(t_nm):.3f}s"
    )
    print(
        f"   max error (domain units)  baseline {e_lib:.2e}  closed_form {e_cf:.2e}  numeric {e_nm:.2e}"
    )
    print(
        f"RATIO warp closed_form accuracy: {e_lib / max(e_cf, 1e-16):.1f}x more accurate (target >= 10x) {_verdict(e_lib >= 10 * e_cf)}"
    )
    print(
        f"RATIO warp closed_form speed: {_fmt_ratio(t_lib, t_cf)} (target >= 1x) {_verdict(_ratio(t_lib, t_cf)[0] >= 1)}"
    )
    print(
        f"RATIO warp numeric speed: {_fmt_ratio(t_lib2, t_nm)} (target > 1x) {_verdict(_ratio(t_lib2, t_nm)[0] > 1)}"
    )
    print(
        f"RATIO warp closed_form speed vs our numeric(50): {_fmt_ratio(t_nm2, t_cf2)} (numeric time / closed-form time; not judged)"
    )


FIT_CASES = (("4x4, 64 sets of 5 kp", 4, 64, 5), ("6x6, 4 sets of 50 kp", 6, 4, 50))


def bench_fit(quick: bool, reps: int, kind: str, lib_fit: bool) -> list[str]:
    """Fast fit vs the release's Adam on smooth displacements; returns markdown table rows."""
    iters = 2 if quick else 200
    rows = []
    for label, cells, sets, n in FIT_CASES:
        if quick:
            sets, n = min(sets, 2), min(n, 10)
        cpab = CPAB(Tessellation(cells, cells, kind=kind))
        base = Baseline(cpab, use_lib=lib_fit and kind == "triangles")
        cpab.fit(*smooth_displacement(1, n, 0.1, torch.Generator().manual_seed(0)))  # caches
        for amp in AMPLITUDES[:1] if quick else AMPLITUDES:
            gen = torch.Generator().manual_seed(1000 * cells + int(100 * amp))
            kd64, ks64 = smooth_displacement(sets, n, amp, gen)
            kd, ks = kd64.float(), ks64.float()
            print(
                f"\n== Fit alone: {label} ({kind}), smooth displacement RMS {amp}; baseline {base.name}, Adam {iters} steps"
            )
            t_adam, t_fast, th_adam, th_fast = _interleaved(
                lambda kd=kd, ks=ks, base=base: base.fit(kd, ks, iters),
                lambda kd=kd, ks=ks, cpab=cpab: cpab.fit(kd, ks),
                reps,
            )
            r_adam = base.residual(kd, ks, th_adam).double()  # as the release sees it
            with torch.no_grad():
                r_fast = (cpab.transform(kd64, th_fast) - ks64).norm(dim=-1).mean(-1)
            worse = (r_fast - r_adam > _noise(r_adam)).float().mean().item()
            med = lambda t: float(torch.tensor(t).median())  # noqa: E731
            speed, lo, hi = _ratio(t_adam, t_fast)
            print(f"   median time  adam {med(t_adam):.3f}s  fast {med(t_fast):.4f}s")
            print(
                f"   residual per set (mean keypoint distance, [-1,1] units)\n     adam {_quantiles(r_adam)}\n     fast {_quantiles(r_fast)}"
            )
            print(
                f"   max |theta|: fast {th_fast.abs().max():.1f} (adam's, in its own basis: {th_adam.abs().max():.1f})"
            )
            print(
                f"RATIO fit {label} a={amp} speed: {_fmt_ratio(t_adam, t_fast)} (target >= 10x) {_verdict(speed >= 10)}"
            )
            print(
                f"RATIO fit {label} a={amp} residual: fast worse than adam beyond noise on {worse:.0%} of sets; median adam/fast {r_adam.median() / r_fast.median():.1f}x, p90 {r_adam.quantile(0.9) / r_fast.quantile(0.9):.1f}x (target 0%) {_verdict(worse == 0)}"
            )
            rows.append(
                f"| {label} | {amp} | {speed:.0f}x ({lo:.0f}-{hi:.0f}) | {worse:.0%} | "
                f"{r_fast.median():.1e} / {r_fast.quantile(0.9):.1e} | "
                f"{r_adam.median():.1e} / {r_adam.quantile(0.9):.1e} | {th_fast.abs().max():.0f} |"
            )
    return rows


def bench_end_to_end(quick: bool, gen: torch.Generator, reps: int, lib_fit: bool) -> None:
    bsz, side = (1, 8) if quick else (8, 64)
    it_l, it_g = (2, 3) if quick else (200, 300)
    amp = 0.4
    loc, glo = CPAB(Tessellation(4, 4)), CPAB(Tessellation(6, 6))
    bl, bg = Baseline(loc, use_lib=lib_fit), Baseline(glo, use_lib=lib_fit)
    kd_l, ks_l = (t.float() for t in smooth_displacement(bsz * 10, 5, amp, gen))
    kd_g, ks_g = (t.float() for t in smooth_displacement(bsz, 50, amp, gen))
    print(
        f"\n== End to end, one training step: batch {bsz}, 10 local 4x4 (5 kp) + 1 global 6x6 (50 kp),"
    )
    print(
        f"   smooth displacement RMS {amp}; dense {side}x{side} flows, forward + backward; baseline {bl.name}, Adam {it_l}/{it_g}"
    )

    # Timed: fits + dense flows + backward. The keypoint residuals are scored afterwards,
    # outside the timed region, for both sides alike.
    def release():
        tl = bl.fit(kd_l, ks_l, it_l).requires_grad_(True)
        tg = bg.fit(kd_g, ks_g, it_g).requires_grad_(True)
        fl = bl.flow(tl, side, side)
        fg = bg.flow(tg, side, side)
        (fl.sum() + fg.sum()).backward()
        return tl.detach(), tg.detach()

    def ours(kp_grad: bool):
        # kp_grad=False is the release's setting (keypoints detached, theta a leaf);
        # kp_grad=True also carries the fit's implicit gradient back to the keypoints.
        kdl, ksl = kd_l.clone().requires_grad_(kp_grad), ks_l.clone().requires_grad_(kp_grad)
        kdg, ksg = kd_g.clone().requires_grad_(kp_grad), ks_g.clone().requires_grad_(kp_grad)
        tl = loc.fit(kdl, ksl)
        tg = glo.fit(kdg, ksg)
        if not kp_grad:
            tl, tg = tl.requires_grad_(True), tg.requires_grad_(True)
        fl = loc.flow(tl, side, side)
        fg = glo.flow(tg, side, side)
        (fl.sum() + fg.sum()).backward()
        return tl.detach(), tg.detach()

    t_rel, t_our, (tl_a, tg_a), (tl_f, tg_f) = _interleaved(release, lambda: ours(False), reps)
    t_rel2, t_grad, _, _ = _interleaved(release, lambda: ours(True), max(1, reps // 2))
    rl_a, rg_a = bl.residual(kd_l, ks_l, tl_a), bg.residual(kd_g, ks_g, tg_a)
    with torch.no_grad():
        rl_f = (loc.transform(kd_l.double(), tl_f) - ks_l).norm(dim=-1).mean(-1)
        rg_f = (glo.transform(kd_g.double(), tg_f) - ks_g).norm(dim=-1).mean(-1)
    med = lambda t: float(torch.tensor(t).median())  # noqa: E731
    print(
        "   timed: fits + flows + backward (residuals scored outside the timed region, both sides)"
    )
    print(
        f"   median time  release {med(t_rel):.2f}s  ours (keypoints detached, as the release) {med(t_our):.3f}s"
    )
    print(
        f"   ours with gradients to the keypoints {med(t_grad):.3f}s ({_fmt_ratio(t_rel2, t_grad)}; not judged)"
    )
    print(
        f"   local residual   release {_quantiles(rl_a)}\n                    ours    {_quantiles(rl_f)}"
    )
    print(
        f"   global residual  release {_quantiles(rg_a)}\n                    ours    {_quantiles(rg_f)}"
    )
    ok = rl_f.mean() <= rl_a.mean() and rg_f.mean() <= rg_a.mean()
    speed = _ratio(t_rel, t_our)[0]
    print(
        f"RATIO end-to-end speed (keypoints detached): {_fmt_ratio(t_rel, t_our)} (target >= 30x) {_verdict(speed >= 30)}"
    )
    print(
        f"RATIO end-to-end residual: release/ours local {rl_a.mean() / rl_f.mean():.1f}x, global {rg_a.mean() / rg_f.mean():.1f}x (target >= 1x) {_verdict(bool(ok))}"
    )


def memory_child(quick: bool) -> None:
    """Peak memory of 32 x 11 dense 64x64 closed-form flows, forward + backward."""
    bsz, side = (1, 8) if quick else (32, 64)
    gen = torch.Generator().manual_seed(1)
    loc, glo = CPAB(Tessellation(4, 4)), CPAB(Tessellation(6, 6))
    tl = (0.3 * loc.sample(bsz * 10, generator=gen)).float().requires_grad_(True)
    tg = (0.3 * glo.sample(bsz, generator=gen)).float().requires_grad_(True)
    before = _peak_rss_kib()
    (loc.flow(tl, side, side).sum() + glo.flow(tg, side, side).sum()).backward()
    peak = _peak_rss_kib()
    print(f"{(peak - before) / 2**20:.3f} {peak / 2**20:.3f}")


def _peak_rss_kib() -> int:
    """Peak resident set of this process in KiB. VmHWM belongs to the address space and
    restarts at exec, unlike ru_maxrss, which a child inherits from its forked parent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def bench_memory(quick: bool) -> None:
    out = (
        subprocess.run(
            [sys.executable, __file__, "--memory-child"] + (["--quick"] if quick else []),
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    gib, total = (float(v) for v in out.split())
    print("\n== Memory: 32 x 11 dense 64x64 flows, closed form, forward + backward")
    print(f"   process peak {total:.2f} GiB (includes torch itself)")
    print(f"RATIO memory peak increase: {gib:.2f} GiB (target <= 2 GiB) {_verdict(gib <= 2)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="tiny sizes; smoke test only")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("CPAB_BENCH_THREADS", 2)))
    ap.add_argument(
        "--reps", type=int, default=None, help="interleaved repetitions (default 5; quick 2)"
    )
    ap.add_argument(
        "--kind",
        choices=["triangles", "squares"],
        default="triangles",
        help="tessellation of the fit cases (squares: our numeric Adam as baseline)",
    )
    ap.add_argument(
        "--lib-fit",
        action="store_true",
        help="run the release's Adam fit through libcpab (measured ~250 s per 64-set fit on "
        "smooth displacements; default: the same Adam on our 50-step numeric integrator, "
        "which is faster and so the stricter baseline)",
    )
    ap.add_argument("--only", choices=["warp", "fit", "e2e", "memory"], default=None)
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.quick)
        return
    reps = args.reps or (2 if args.quick else 5)
    gen = torch.Generator().manual_seed(0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"load average {load:.1f} at start, {reps} interleaved reps, quick={args.quick}"
    )
    if args.only in (None, "warp"):
        bench_warp(args.quick, gen, reps)
    if args.only in (None, "fit"):
        rows = bench_fit(args.quick, reps, args.kind, args.lib_fit)
        print(
            "\n| case | a | speed vs Adam, median (min-max) | fast worse than Adam | fast median / p90 | Adam median / p90 | max abs theta fast |"
        )
        print("|---|---|---|---|---|---|---|")
        print("\n".join(rows))
    if args.only in (None, "e2e"):
        bench_end_to_end(args.quick, gen, reps, args.lib_fit)
    if args.only in (None, "memory"):
        bench_memory(args.quick)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average {load:.1f} at the end")


if __name__ == "__main__":
    main()
