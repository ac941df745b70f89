"""The ``cg`` solver: Lanczos / conjugate gradient on A = g + lambda I, the exact trust-region
step in the Krylov space (basis in output or weight space), or CG then rescaling to eta."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from geodesic.core.metric import LocalMetric
from geodesic.core.settings import GeodesicSettings
from geodesic.core.step import SOLVERS, Step, no_worse_than_standing

@SOLVERS.register("cg")
@dataclass
class ConjugateGradient:
    """Krylov solution of the step problem with A = g + lambda I, c = beta v, k products.

    ``mode``:

    - ``trust_region``: k Lanczos steps on A from c give A ~ Q T Q^T; the step
      problem restricted to the Krylov space, min y^T T y - c^T Q y s.t. ||y|| <= eta, is solved
      exactly (eigendecomposition of the k x k T, bisection on the multiplier mu of
      2 (T + mu I) y = ||c|| e_1), so lambda + mu is the damping that makes ||theta|| = eta
      (the GLTR method). Holds the k basis vectors: k n-vectors of memory.
    - ``output_basis`` (default): the same step in the same Krylov space with the basis kept
      in output space (``_output_lanczos``): no n-vector basis, so a step's memory is that of
      a product.
      In float32 the representation p = J^T rho / |B| loses accuracy along directions where J
      is ill-conditioned (bench/README.md gives the size of the effect against the
      weight-space basis), which the trust region mostly suppresses.
    - ``rescale``: k CG iterations on A x = c / 2, then theta = x min(1, eta / ||x||).

    Every mode gives theta^T g theta for free.
    """

    iters: int = GeodesicSettings.cg_iters  # the defaults are the settings' defaults
    damping: float = GeodesicSettings.damping
    mode: str = GeodesicSettings.cg_mode

    @classmethod
    def from_settings(cls, s) -> "ConjugateGradient":
        return cls(iters=s.cg_iters, damping=s.damping, mode=s.cg_mode)

    def __call__(self, local: LocalMetric, v: Tensor, eta: float, beta: float = 1.0) -> Step:
        if self.mode == "rescale":
            return self._rescaled_cg(local, beta * v, eta)
        # c = beta v is never formed: both Lanczos forms take v with ||c|| = beta ||v||
        solve = self._lanczos if self.mode == "trust_region" else self._output_lanczos
        return solve(local, v, beta, eta)

    def _rescaled_cg(self, local: LocalMetric, c: Tensor, eta: float) -> Step:
        b = 0.5 * c
        x = torch.zeros_like(b)
        r, p = b.clone(), b.clone()
        rr = r.dot(r)
        b_norm = rr.sqrt()
        bgb = 0.0  # b^T g b from the first product
        for i in range(self.iters):
            if rr.sqrt() <= 1e-12 * b_norm:
                break
            ap = local.mvp(p) + self.damping * p
            pap = p.dot(ap)
            if i == 0:
                bgb = float(pap) - self.damping * float(rr)
            alpha = rr / pap
            x.add_(alpha * p)
            r.sub_(alpha * ap)
            rr_new = r.dot(r)
            p = r + (rr_new / rr) * p
            rr = rr_new
        quad = x.dot(b - r) - self.damping * x.dot(x)
        scale = min(1.0, eta / float(x.norm().clamp_min(1e-30)))
        step = Step(x * scale, quad * scale**2, float(rr.sqrt() / b_norm.clamp_min(1e-30)))
        return no_worse_than_standing(step, c, bgb * 4.0, eta, 1.0)

    def _lanczos(self, local: LocalMetric, v: Tensor, beta: float, eta: float) -> Step:
        """k Lanczos steps on g from c with the basis Q held as k n-vectors: g ~ Q T Q^T, then
        the step problem over theta = Q y (min y^T (T + lambda I) y - ||c|| e_1 . y, ||y|| <=
        eta) solved exactly."""
        v_norm = v.norm()
        basis = v.new_empty(self.iters, v.numel())  # rows q_0 .. q_{k-1}: the Krylov basis Q^T
        torch.div(v, v_norm.clamp_min(1e-30), out=basis[0])
        alphas, betas = [], []
        for j in range(self.iters):
            u = local.mvp(basis[j])
            q = basis[: j + 1]
            h = q @ u
            alphas.append(h[j])
            u.addmv_(q.T, h, alpha=-1.0)  # full reorthogonalisation, classical Gram-Schmidt
            u.addmv_(q.T, q @ u, alpha=-1.0)  # ... applied twice ("twice is enough")
            b = u.norm()
            if j + 1 == self.iters or b <= 1e-10 * alphas[0].abs().clamp_min(1e-30):
                break
            betas.append(b)
            torch.div(u, b, out=basis[j + 1])
        k = len(alphas)
        t = torch.diag(torch.stack(alphas)).double()
        if k > 1:
            off = torch.stack(betas[: k - 1]).double()
            t = t + torch.diag(off, 1) + torch.diag(off, -1)
        e1 = torch.zeros(k, dtype=torch.float64)
        e1[0] = beta * float(v_norm)
        y = self._basis_trust_region(t, torch.eye(k, dtype=torch.float64), e1, eta)
        theta = basis[:k].T @ y.to(v.dtype)
        step = Step(theta, torch.as_tensor(float(y @ t @ y), dtype=v.dtype), None)
        return no_worse_than_standing(step, v, float(alphas[0]) * float(v_norm) ** 2, eta, beta)

    def _output_lanczos(self, local: LocalMetric, v: Tensor, beta: float, eta: float) -> Step:
        """The exact trust-region step in the Krylov space K_k(g, c) from k products, with the
        Krylov basis held in output space.

        K_k(g, c) = span{c, p_1, ..., p_{k-1}} with p_i = J^T rho_i / |B|: since g p =
        J^T (H J p) / |B|, the Lanczos recurrence p_{i+1} ~ g p_i - sum_l h_l p_l runs on the
        output-space rho_i, one product s_i = J p_i = J J^T rho_i / |B| each. With <u, u'> the
        batch-mean output-space inner product:

            p_l . g p_i = <s_l, H s_i>,    p_l . p_i = <rho_l, s_i>,    c . p_i = <J c, rho_i>.

        Over theta = y_0 c + sum_i y_i p_i the step problem is min y^T (M + lambda G) y - G_0 . y
        s.t. y^T G y <= eta^2 (G the basis' Gram matrix, M its g-form, G_0 its first row), solved
        exactly; theta = y_0 c + J^T (sum_i y_i rho_i) / |B| is the one n-vector formed. The
        small algebra runs in float64.
        """
        c_norm = beta * float(v.norm())
        if c_norm == 0.0:
            return Step(torch.zeros_like(v), torch.zeros((), dtype=v.dtype, device=v.device))
        inner, apply_h = local.output_inner, local.output_operator
        jc = beta * local.jvp(v).double()
        rho: list[Tensor] = []  # p_i = J^T rho_i / |B|, orthonormal
        s: list[Tensor] = []  # s_i = J p_i
        weighted = [apply_h(jc)]  # H J of each basis vector: g c = J^T (H J c) / |B|
        r, scale = weighted[0], 0.0
        for _ in range(self.iters - 1):
            r = r - sum(inner(sl, r) * rl for sl, rl in zip(s, rho))  # against p_l, analytic
            s_new = local.gram(r.to(v.dtype)).double()
            h = [inner(rl, s_new) for rl in rho]  # second pass ("twice is enough")
            r = r - sum(hl * rl for hl, rl in zip(h, rho))
            s_new = s_new - sum(hl * sl for hl, sl in zip(h, s))
            norm2 = float(inner(r, s_new))  # ||p||^2
            scale = max(scale, norm2)
            if norm2 <= 1e-12 * scale:
                break
            rho.append(r / norm2**0.5)
            s.append(s_new / norm2**0.5)
            weighted.append(apply_h(s[-1]))
            r = weighted[-1]
        images = [jc] + s  # J of each basis vector
        m = torch.tensor([[float(inner(a, b)) for b in weighted] for a in images],
                         dtype=torch.float64)
        gram = torch.eye(len(images), dtype=torch.float64)
        gram[0, 0] = c_norm**2
        for i, rl in enumerate(rho, start=1):
            gram[0, i] = gram[i, 0] = float(inner(jc, rl))
        y = self._basis_trust_region(0.5 * (m + m.T), gram, gram[0], eta)
        theta = local.pullback(sum(yi * rl for yi, rl in zip(y[1:].tolist(), rho)).to(v.dtype)) \
            if rho else torch.zeros_like(v)
        theta.add_(v, alpha=beta * float(y[0]))
        local.metric.evals += 1  # J c and this pullback: one product's worth
        step = Step(theta, torch.as_tensor(float(y @ m @ y), dtype=v.dtype), None)
        return no_worse_than_standing(step, v, float(m[0, 0]) / beta**2, eta, beta)

    def _basis_trust_region(self, m: Tensor, gram: Tensor, linear: Tensor, eta: float) -> Tensor:
        """y = argmin y^T (M + lambda G) y - linear . y  s.t.  y^T G y <= eta^2.

        G = V E V^T gives coordinates z = E^{1/2} V^T y in which the basis is orthonormal
        (directions with E below 1e-12 max E are numerically dependent and dropped); then
        the eigendecomposition of the small matrix and bisection on the multiplier mu of
        2 (M_z + lambda I + mu I) z = b_z (mu = 0 when the unconstrained minimiser is inside).
        """
        e, v = torch.linalg.eigh(gram)
        keep = e > 1e-12 * e.max()
        to_y = v[:, keep] / e[keep].sqrt()
        d, u = torch.linalg.eigh(to_y.T @ m @ to_y)
        d = d.clamp_min(0.0) + self.damping
        rhs = u.T @ (to_y.T @ linear)

        def solve(mu: float) -> Tensor:
            return u @ (rhs / (2.0 * (d + mu)))

        z, lo, hi = solve(0.0), 0.0, float(rhs.norm()) / (2.0 * eta)
        if z.norm() > eta:
            for _ in range(100):
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if solve(mid).norm() > eta else (lo, mid)
            z = solve(hi)
        return to_y @ z
