"""The attention forward's online softmax (fused logits) for rows whose every key is
masked (logits ~ -1e9: the reference's mask value), as sm90 runs it with FP fusion
(the PTX: fma_rescale_ptx.txt), in numpy with the same roundings:

  p     = exp2(fma(s, log2e, -R_new))        R = round(m · log2e), s · log2e exact
  alpha = exp2(fma(m_i, log2e, -R_new))      before: m_i · log2e exact in the fma
  alpha = exp2(R_i - R_new)                  after: two rounded values

Before, while the row's max holds, alpha = 2^err (err = m·log2e - R, fixed by m: +18.4
at m = -1e9), so the row's sum grows 2^18 a block of keys and overflows past six blocks;
the output is then inf/inf = NaN. After, alpha is 1 there. Prints the share of 2,000
such rows whose sum is not finite (or 0), by keys and block size, for both forms."""
import numpy as np

L = np.float32(1.4426950408889634)
rng = np.random.default_rng(0)


def bf16(x):
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32)


def fma(a, b, c):  # one rounding, as the GPU's fma
    return (np.float64(a) * np.float64(b) + np.float64(c)).astype(np.float32)


def exp2(x):
    with np.errstate(over="ignore"):
        return np.exp2(np.asarray(x, np.float32))


def row_sum(s, bk, fixed):
    m = np.float32(-np.inf)
    r = np.float32(-np.inf)  # round(m · log2e)
    total = np.float32(0)
    for start in range(0, len(s), bk):
        blk = s[start:start + bk]
        m_new = np.maximum(m, blk.max())
        r_new = np.float32(m_new * L)
        if not np.isfinite(m):
            alpha = np.float32(0)
        elif fixed:
            alpha = exp2(r - r_new)
        else:
            alpha = exp2(fma(m, L, -r_new))
        p = exp2(fma(blk, L, -r_new))
        with np.errstate(over="ignore", invalid="ignore"):
            total = np.float32(total * alpha + p.sum(dtype=np.float32))
        m, r = m_new, r_new
    return total


def masked_row(n, pad):
    # the triangle bias in bf16 with the folded key mask (-1e9 at padded keys), the
    # row's own mask (every key: a padded query row) and q·k accumulated in fp32
    tile = bf16(rng.normal(0, 2, n).astype(np.float32)
                + np.where(np.arange(n) >= n - pad, np.float32(-1e9), np.float32(0)))
    row = np.full(n, -1e9, np.float32)
    return ((tile + row) + rng.normal(0, 3, n).astype(np.float32)).astype(np.float32)


print("err of -1e9 · log2e:", float(np.float64(-1e9) * np.float64(L) - np.float64(np.float32(-1e9 * L))))
for n, pad in [(96, 6), (208, 8), (288, 13), (352, 12), (448, 9), (704, 14)]:
    rows = [masked_row(n, pad) for _ in range(2000)]
    cells = []
    for bk in (32, 64):
        for fixed in (False, True):
            bad = sum(not np.isfinite(t) or t == 0 for t in (row_sum(s, bk, fixed) for s in rows))
            cells.append(f"{bk}-key {'after' if fixed else 'before'} {bad / len(rows):.2f}")
    print(f"{n} keys ({-(-n // 32)}/{-(-n // 64)} blocks): " + ", ".join(cells))
