"""The learning coefficient of reduced-rank regression in closed form (Aoyagi & Watanabe 2005)."""


def aoyagi_watanabe(M: int, N: int, H: int, r: int) -> float:
    """RLCT of reduced-rank regression y = B A x (A: H x M, B: N x H), true rank r
    (Aoyagi & Watanabe 2005)."""
    if N + r <= M + H and M + r <= N + H and H + r <= M + N:
        v = 2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2
        return (v + (M + N + H + r) % 2) / 8
    if M + H < N + r:
        return (H * M - H * r + N * r) / 2
    if N + H < M + r:
        return (H * N - H * r + M * r) / 2
    return M * N / 2
