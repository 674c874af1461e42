"""Independent reference for the population loss: scipy quadrature of the network itself.

Written from the definition only (numpy forward pass, integration over mu split at every
ReLU kink), sharing no code with tms.theory.loss.
"""
import numpy as np
from scipy.integrate import quad


def population_loss_quad(W: np.ndarray, b: np.ndarray) -> float:
    """E_{i, mu} ||mu e_i - ReLU(W^T W mu e_i + b)||^2 for one W (r, c), b (c,)."""
    c = W.shape[1]
    G = W.T @ W
    total = 0.0
    for i in range(c):
        e = np.zeros(c)
        e[i] = 1.0

        def err(mu, i=i, e=e):
            out = np.maximum(mu * G[:, i] + b, 0.0)
            return float(np.sum((mu * e - out) ** 2))

        kinks = []
        for j in range(c):
            if G[j, i] != 0:
                t = -b[j] / G[j, i]
                if 0 < t < 1:
                    kinks.append(t)
        edges = [0.0] + sorted(kinks) + [1.0]
        for lo, hi in zip(edges[:-1], edges[1:]):
            if hi > lo:
                val, _ = quad(err, lo, hi, epsabs=0.0, epsrel=1e-13, limit=200)
                total += val
    return total / c
